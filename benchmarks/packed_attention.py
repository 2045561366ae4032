"""Attention over packed rows: flex attention with a document block mask vs SDPA with a dense mask.

    .venv/bin/python benchmarks/packed_attention.py                  # L = 4096, 2 rows, MIMIC-like lengths
    .venv/bin/python benchmarks/packed_attention.py --seq-len 8192 --rows 1 --hidden 512

A small Llama (`--layers`, `--hidden`, head dim 64, a 1,000-token vocabulary so the logits stay
small next to attention) runs `--rows` rows of `--seq-len` tokens packed from the MIMIC-like
example lengths of `benchmarks/packing.py`, through the trainer's own path: `collate_packed`, then
`model_inputs_for_packed_batch` (flex: `document_block_mask` from `cu_seqlens`; SDPA: the dense
[B, 1, L, L] block-causal mask), then the model. Mask building is inside the timed step, as it is
per micro-batch in training. On CUDA a step is forward + backward (the training step); on CPU it
is the forward only, since PyTorch's FlexAttention has no backward on CPU (torch 2.13).

Each kernel runs in its own fresh process: a warm-up step (flex compiles its kernel there), then
`--repeats` timed steps. Peak memory is, on CUDA, `max_memory_allocated` over the timed steps
minus the memory before them; on CPU, the growth of the peak RSS (VmHWM, reset after the warm-up
through /proc/self/clear_refs) over the RSS before the timed steps. Prints MB, median seconds, the
flex / dense ratios and the largest logit difference between the two (they compute the same thing).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from packing import examples_of, mimic_like
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.modeling.packed_attention import model_inputs_for_packed_batch
from radllm.packing import collate_packed, pack_examples

KERNELS = {"dense mask (sdpa)": "sdpa", "document block mask (flex)": "flex_attention"}


def proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def packed_batch(seq_len: int, rows: int, grid: int, seed: int) -> dict[str, torch.Tensor]:
    """`rows` full packed rows of MIMIC-like examples (image block grid² + 2 tokens)."""
    rng = random.Random(seed)
    lengths = [n for n in mimic_like(50 * rows * seq_len // 500, grid * grid + 2, rng) if n <= seq_len]
    packed = pack_examples(examples_of(lengths), seq_len, pad_id=0)
    return collate_packed(sorted(packed, key=lambda row: row.n_pad)[:rows])


def measure(kernel: str, args: argparse.Namespace) -> dict[str, float | list[float]]:
    """Warm-up plus `args.repeats` timed steps of one kernel in this process."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000, hidden_size=args.hidden, intermediate_size=2 * args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64, num_key_value_heads=args.hidden // 64, max_position_embeddings=args.seq_len,
        attn_implementation=kernel, use_cache=False,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    batch = {k: v.to(device) for k, v in packed_batch(args.seq_len, args.rows, args.grid, args.seed).items()}
    train = device.type == "cuda"

    def step() -> torch.Tensor:
        with torch.set_grad_enabled(train):
            logits = model(**model_inputs_for_packed_batch(batch, kernel, dtype)).logits
            if train:
                logits.float().square().mean().backward()
        if train:
            torch.cuda.synchronize()
        return logits.detach()

    logits = step()  # warm-up: flex compiles here
    if train:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = proc_status_mb("VmRSS")
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if train else proc_status_mb("VmHWM")
    return {"peak_mb": peak - before, "seconds": statistics.median(seconds), "logits": logits[0, :64].float().flatten().tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=2, help="packed rows per micro-batch")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size (heads of 64)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--grid", type=int, default=16, help="VQ code grid side (image block = grid² + 2 tokens)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=sorted(KERNELS.values()), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    results = {}
    for name, kernel in KERNELS.items():
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", kernel], capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:>27}: peak +{r['peak_mb']:8.1f} MB  {r['seconds']:7.3f} s per step")
    dense, flex = results.values()
    step = "forward + backward" if torch.cuda.is_available() else "forward (CPU: no flex backward)"
    difference = max(abs(a - b) for a, b in zip(dense["logits"], flex["logits"]))
    print(f"L = {args.seq_len}, {args.rows} rows, {step}: flex / dense peak memory {flex['peak_mb'] / dense['peak_mb']:.3f}, "
          f"time {flex['seconds'] / dense['seconds']:.3f}; max |logit difference| {difference:.1e}")


if __name__ == "__main__":
    main()
