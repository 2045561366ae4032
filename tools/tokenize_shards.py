"""Tokenize a manifest into shards with several processes, one per GPU (or CPU process).

    deepspeed --num_gpus 8 tools/tokenize_shards.py --manifest M --vq VQ --tokenizer TOK --out SHARDS

On a machine without GPUs the DeepSpeed launcher counts NUMA nodes as devices, so name the
process count explicitly (`--num_gpus` is an alias of `--num_accelerators`):

    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/tokenize_shards.py --manifest M ...

`torchrun --nproc_per_node 2 tools/tokenize_shards.py ...` works the same way. Each process reads
RANK / WORLD_SIZE / LOCAL_RANK from the launcher, writes every WORLD_SIZE-th shard (see
`radllm.data.tokenize`), and uses cuda:LOCAL_RANK when `--device auto` finds CUDA. The ranks then
agree (one all-reduce; gloo on CPU, nccl on GPU) on whether all of them succeeded, and rank 0
merges the shard records into rejects.jsonl and index.json. Arguments are those of
`radllm tokenize`.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from radllm.cli.tokenize_shards import configure
from radllm.data.tokenize import tokenize_shards, write_index
from radllm.errors import RadllmError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(parser)
    parser.add_argument(
        "--dist-timeout-hours",
        type=float,
        default=24.0,
        help="how long finished ranks wait for the slowest one (default: 24; torch's own default of 30 min is too short)",
    )
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # passed by the deepspeed launcher
    return parser.parse_args()


def tokenize_rank(args: argparse.Namespace, rank: int, world_size: int, local_rank: int) -> None:
    """This rank's shards, then (rank 0, once every rank succeeded) the index."""
    cuda = torch.cuda.is_available()
    device = f"cuda:{local_rank}" if args.device == "auto" and cuda else args.device
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=args.dist_timeout_hours))
    try:
        error: Exception | None = None
        try:
            tokenize_shards(
                args.manifest, args.vq, args.tokenizer, args.out,
                shard_size=args.shard_size, batch_size=args.batch_size, device=device,
                num_workers=args.num_workers, rank=rank, world_size=world_size, progress=not args.no_progress,
            )
        except Exception as err:  # re-raised below, after telling the other ranks (else they wait forever)
            error = err
        ok = torch.tensor([0 if error else 1], device=f"cuda:{local_rank}" if cuda else "cpu")
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)  # the barrier: nobody writes the index early
        if error is not None:
            raise error
        if not ok.item():
            raise RadllmError("another rank failed; rerun to finish (complete shards are kept)")
        if rank == 0:
            index = write_index(args.manifest, args.vq, args.tokenizer, args.out, shard_size=args.shard_size)
            counts = ", ".join(f"{split}: {index.num_samples(split)}" for split in index.splits)
            print(f"{args.out}: samples {counts}; {index.num_rejects} rejected image(s)")
    finally:
        dist.destroy_process_group()


def main() -> int:
    args = parse_args()
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29511")
    try:
        tokenize_rank(args, rank, world_size, int(os.environ.get("LOCAL_RANK", 0)))
    except RadllmError as err:
        print(f"tokenize_shards (rank {rank}): error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
