"""Cost of the L2 anti-forgetting pull under ZeRO-3, and ZeRO-3's per-rank memory, measured side by side.

    DS_ACCELERATOR=cpu python benchmarks/train_anchor.py [--hidden 256 --layers 4 --steps 8]

The driver starts the `deepspeed` launcher twice (1 and 2 ranks). Each run builds a Llama from a
config under ZeRO-3 (torch AdamW client optimizer, fp32 on CPU / bf16 on GPU), then times
optimizer steps on random packed-length batches in three modes, interleaved step by step so
drift in machine load hits all three alike:
  none    no pull;
  local   `L2Anchor.pull` on the rank's fp32 partition (what the trainer does);
  gather  a naive pull: all-gather each full fp32 parameter (`safe_get_full_fp32_param`), pull,
          write it back (`safe_set_full_fp32_param`).
It also reports the bytes of model + optimizer state each rank holds (16-bit partitions, fp32
master partitions, Adam moments). Printed: step-time ratios local/none and gather/none at 2
ranks, and the per-rank state ratio 2 ranks / 1 rank (ZeRO-3 target <= 0.55).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def worker(args: argparse.Namespace) -> None:
    import deepspeed
    import deepspeed.comm as dist
    import torch
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.integrations import HfDeepSpeedConfig

    from radllm.training.anchor import L2Anchor

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    h = args.hidden
    ds = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "train_batch_size": world, "gradient_clipping": 1.0,
          "bf16": {"enabled": cuda}, "zero_optimization": {"stage": 3, "reduce_bucket_size": h * h, "stage3_prefetch_bucket_size": int(0.9 * h * h),
          "stage3_param_persistence_threshold": 10 * h}, "zero_allow_untested_optimizer": True, "steps_per_print": 10**9}
    keep = HfDeepSpeedConfig(ds)  # noqa: F841  (partition at construction)
    config = LlamaConfig(vocab_size=4096, hidden_size=h, intermediate_size=4 * h, num_hidden_layers=args.layers, num_attention_heads=max(1, h // 64), attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config) if not cuda else LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds, dist_init_required=False)
    params = [(n, p) for n, p in engine.module.named_parameters()]
    initial = {n: safe_get_full_fp32_param(p).clone() for n, p in params}  # for the naive pull only
    anchor = L2Anchor(params, lambda n, p: initial[n], 3, lambda_reg=1.0)

    def naive_pull(lr: float) -> None:
        for name, param in params:
            full = safe_get_full_fp32_param(param)  # all-gather
            safe_set_full_fp32_param(param, full - 2 * lr * (full - initial[name]))

    def step(mode: str) -> float:
        ids = torch.randint(0, 4096, (1, args.seq_len), device=engine.device)
        start = time.perf_counter()
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        if mode == "local":
            anchor.pull(1e-4)
        elif mode == "gather":
            naive_pull(1e-4)
        engine.step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    modes = ("none", "local", "gather")
    for mode in modes:  # warm-up
        step(mode)
    times = {mode: [] for mode in modes}
    for _ in range(args.steps):
        for mode in modes:
            times[mode].append(step(mode))
    opt = engine.optimizer
    state_bytes = sum(p.ds_tensor.numel() * p.ds_tensor.element_size() for _, p in params)
    state_bytes += sum(t.numel() * 4 for t in opt.fp32_partitioned_groups_flat)
    state_bytes += sum(v.numel() * v.element_size() for s in opt.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.ndim)
    if rank == 0:
        median = {m: sorted(t)[len(t) // 2] for m, t in times.items()}
        Path(args.out).write_text(json.dumps({"world": world, "median_step_s": median, "state_bytes_per_rank": state_bytes, "anchor_elements": anchor.numel}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    launcher = Path(sys.executable).parent / "deepspeed"
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world, port in ((1, 29611), (2, 29612)):
            out = Path(tmp) / f"w{world}.json"
            cmd = [str(launcher), "--num_accelerators" if not _cuda() else "--num_gpus", str(world), "--master_port", str(port), __file__, "--worker", "--out", str(out),
                   "--hidden", str(args.hidden), "--layers", str(args.layers), "--seq-len", str(args.seq_len), "--steps", str(args.steps)]
            subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
            results[world] = json.loads(out.read_text())
    two = results[2]["median_step_s"]
    print(json.dumps(results, indent=2))
    print(f"2-rank ZeRO-3 step time, local pull / no pull:  {two['local'] / two['none']:.3f}x")
    print(f"2-rank ZeRO-3 step time, gather pull / no pull: {two['gather'] / two['none']:.3f}x")
    print(f"per-rank model+optimizer state, 2 ranks / 1 rank: {results[2]['state_bytes_per_rank'] / results[1]['state_bytes_per_rank']:.3f}x")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
