"""How long a ZeRO-3 checkpoint takes to write: the grace a pre-empted training job needs.

    DS_ACCELERATOR=cpu .venv/bin/radllm launch --nproc-per-node 2 -- .venv/bin/python benchmarks/checkpoint_save.py
    DS_ACCELERATOR=cpu .venv/bin/radllm launch --nproc-per-node 2 -- .venv/bin/python benchmarks/checkpoint_save.py --hidden 1536 --layers 12

A Llama-architecture model built from a config (no download) is wrapped by DeepSpeed with
`ds_configs/zero3.json` and the trainer's AdamW, stepped once (so the optimizer states exist),
and saved `--rounds` times with `engine.save_checkpoint`, the call the trainer makes. Printed by
rank 0: parameters, bytes on disk per checkpoint (and per parameter), median seconds and the
write rate. A stop request waits for the step in progress and then this save, so slurm's KillWait
(scancel) and the `#SBATCH --signal=B:USR1@LEAD` lead time (time limit) must exceed one step plus
this figure at your model size on your file system; `metrics.jsonl` records every save of a real
run as `{"kind": "checkpoint", "seconds", "bytes"}`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.training.config import OptimOptions
from radllm.training.ds_config import fill_ds_config, load_ds_json
from radllm.training.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=40_000, help="an LLM vocabulary extended by a VQ codebook")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="where to write (default: a temporary directory on this node; "
                                                     "give the run_dir's file system to measure that)")
    args = parser.parse_args()

    deepspeed.init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=args.hidden, intermediate_size=int(2.6875 * args.hidden), num_hidden_layers=args.layers,
                         num_attention_heads=max(1, args.hidden // 128), vocab_size=args.vocab, max_position_embeddings=2048)
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    optim = OptimOptions()
    optimizer, _ = build_optimizer(model, optim, max_steps=10, cuda=torch.cuda.is_available())
    ds_config = fill_ds_config(load_ds_json(REPO / "ds_configs" / "zero3.json"), optim, world, args.hidden, bf16=False)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    batch = torch.randint(0, args.vocab, (1, 64), device=engine.device)
    loss = engine(input_ids=batch, labels=batch).loss
    engine.backward(loss)
    engine.step()

    root = Path(args.out) if args.out else Path(tempfile.gettempdir())
    target = root / f"radllm-checkpoint-bench-{os.environ.get('MASTER_PORT', '0')}"
    seconds, size = [], 0
    for round_ in range(args.rounds):
        dist.barrier()
        started = time.monotonic()
        engine.save_checkpoint(str(target), tag=f"round{round_}", save_latest=False)
        dist.barrier()
        seconds.append(time.monotonic() - started)
        if rank == 0:
            size = sum(p.stat().st_size for p in (target / f"round{round_}").rglob("*") if p.is_file())
            shutil.rmtree(target / f"round{round_}")
    if rank == 0:
        shutil.rmtree(target, ignore_errors=True)
        median = statistics.median(seconds)
        print(f"{n_params / 1e6:.1f}M parameters, {world} ranks (ZeRO-3, AdamW): checkpoint {size / 1e9:.2f} GB "
              f"({size / n_params:.1f} bytes/parameter), median save {median:.2f} s over {args.rounds} "
              f"({', '.join(f'{s:.2f}' for s in seconds)}), {size / 1e9 / median:.2f} GB/s")
    dist.barrier()


if __name__ == "__main__":
    main()
