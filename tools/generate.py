"""Batch generation with several processes (one per GPU): each rank takes every WORLD_SIZE-th study.

    deepspeed --num_gpus 8 tools/generate.py reports --model MODEL --vq VQ --input M --out preds.jsonl
    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/generate.py vqa --model MODEL --vq VQ --input SHARDS --out vqa.jsonl

Arguments are those of `radllm generate TASK`. Rank r generates the studies i ≡ r (mod world size)
into its own part file (`OUT.part-0000r-of-0000N`, appended atomically per batch, resumable);
once every rank has finished (one all-reduce that also tells the others whether it succeeded),
rank 0 merges the parts into OUT in input order, so the output equals a one-process run's.
`--device auto` uses cuda:LOCAL_RANK when CUDA is available.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

import deepspeed
import torch
import torch.distributed as dist

from radllm.cli.generate import build_request, configure_task, describe
from radllm.errors import RadllmError
from radllm.generation import TASKS, prepare_job


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # passed by the deepspeed launcher, before TASK
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in TASKS:
        sub = tasks.add_parser(task)
        configure_task(sub, task)
        sub.add_argument("--dist-timeout-hours", type=float, default=24.0, help="how long finished ranks wait for the slowest one (default 24)")
    return parser.parse_args()


def generate_rank(args: argparse.Namespace, rank: int, world_size: int, local_rank: int) -> None:
    """This rank's share, then (rank 0, once every rank succeeded) the merge."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
        if args.device == "auto":
            args.device = f"cuda:{local_rank}"
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", timeout=timedelta(hours=args.dist_timeout_hours))
    try:
        error: Exception | None = None
        summary = None
        try:
            job = prepare_job(build_request(args))
            summary = job.run(rank, world_size)
        except Exception as err:  # re-raised below, after telling the other ranks (else they wait forever)
            error = err
        ok = torch.tensor([0 if error else 1], device=f"cuda:{local_rank}" if cuda else "cpu")
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)  # the barrier: nobody merges early
        if error is not None:
            raise error
        if not ok.item():
            raise RadllmError("another rank failed; rerun to finish (records written so far are kept)")
        counts = job.merge() if rank == 0 else None
        print(describe(summary, counts, job.request.records_path))
    finally:
        dist.destroy_process_group()


def main() -> int:
    args = parse_args()
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    try:
        generate_rank(args, rank, world_size, int(os.environ.get("LOCAL_RANK", 0)))
    except RadllmError as err:
        print(f"generate (rank {rank}): error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
