"""Peak memory and time of one training step: the loss from whole logits vs the chunked output layer.

    .venv/bin/python benchmarks/chunked_loss.py                       # V = 40,000, L = 2,048, hidden 64
    .venv/bin/python benchmarks/chunked_loss.py --vocab 152064 --seq-len 4096 --chunk 1024

A small Llama (hidden 64, 2 layers) with a large vocabulary, one packed row of `--seq-len` tokens,
forward + backward of the summed next-token loss as the trainer computes it: `token_nll` of the
model's [B, L, V] logits, or `model.loss_chunk_tokens` positions at a time through
`radllm.modeling.chunked_loss.ChunkedLossHead`. Each variant runs in its own fresh process; its
peak memory is the growth of the process's peak RSS over its RSS just before the step (the
model, its weights and the batch already allocated), so the two are measured the same way. Also
checks that both give the same loss and gradient. Prints MB, seconds and chunked / whole ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.modeling.chunked_loss import ChunkedLossHead
from radllm.packing import token_nll


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def one_step(vocab: int, seq_len: int, chunk: int) -> dict[str, float]:
    """Forward + backward of one row in this process; chunk 0 = whole logits."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, max_position_embeddings=seq_len, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.config.use_cache = False
    input_ids = torch.randint(0, vocab, (1, seq_len))
    labels = input_ids.clone()
    labels[:, : seq_len // 4] = -100  # a prompt
    before = rss_mb()
    start = time.perf_counter()
    if chunk:
        head = ChunkedLossHead.convert(model.get_output_embeddings(), chunk, model.config)
        with head.targets(labels):
            loss = model(input_ids=input_ids).logits.sum()
    else:
        loss = token_nll(model(input_ids=input_ids).logits, labels).sum()
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    grad = model.get_output_embeddings().weight.grad
    return {"peak_mb": peak - before, "seconds": seconds, "loss": float(loss), "grad_norm": float(grad.norm())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, default=40_000)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=1024, help="positions per chunk (model.loss_chunk_tokens)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_step(args.vocab, args.seq_len, args.child)))
        return
    results = {}
    for name, chunk in (("whole logits", 0), (f"chunked ({args.chunk})", args.chunk)):
        out = subprocess.run([sys.executable, __file__, "--vocab", str(args.vocab), "--seq-len", str(args.seq_len), "--child", str(chunk)],
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:>16}: peak +{r['peak_mb']:8.1f} MB  {r['seconds']:6.2f} s  loss {r['loss']:.6f}  |grad lm_head| {r['grad_norm']:.6f}")
    whole, chunked = results.values()
    print(f"V = {args.vocab}, L = {args.seq_len}: chunked / whole peak memory {chunked['peak_mb'] / whole['peak_mb']:.3f}, "
          f"time {chunked['seconds'] / whole['seconds']:.2f}; loss rel. diff {abs(chunked['loss'] - whole['loss']) / whole['loss']:.1e}, "
          f"grad norm rel. diff {abs(chunked['grad_norm'] - whole['grad_norm']) / whole['grad_norm']:.1e}")


if __name__ == "__main__":
    main()
