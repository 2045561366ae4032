"""Tokenize a manifest into shards with several processes, one per GPU (or CPU process).

    deepspeed --num_gpus 8 tools/tokenize_shards.py --manifest M --vq VQ --tokenizer TOK --out SHARDS
    deepspeed --num_gpus 8 --module radllm.launchers.tokenize_shards ...   # the same from an installed radllm (no checkout)

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

from radllm.cli.tokenize_shards import configure
from radllm.data.tokenize import tokenize_shards, write_index
from radllm.ranks import exit_code, process_group, run_then_agree


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


def tokenize(args: argparse.Namespace) -> None:
    """This rank's shards, then (rank 0, once every rank succeeded) the index."""
    with process_group(default_port=29511, timeout_hours=args.dist_timeout_hours) as ranks:
        device = ranks.device if args.device == "auto" and ranks.cuda else args.device
        run_then_agree(
            lambda: tokenize_shards(
                args.manifest, args.vq, args.tokenizer, args.out,
                shard_size=args.shard_size, batch_size=args.batch_size, device=device,
                num_workers=args.num_workers, rank=ranks.rank, world_size=ranks.world_size, progress=not args.no_progress,
            ),
            ranks,
            kept="complete shards are kept",
        )
        if ranks.rank == 0:
            index = write_index(args.manifest, args.vq, args.tokenizer, args.out, shard_size=args.shard_size)
            counts = ", ".join(f"{split}: {index.num_samples(split)}" for split in index.splits)
            print(f"{args.out}: samples {counts}; {index.num_rejects} rejected image(s)")


def main() -> int:
    args = parse_args()
    return exit_code("tokenize_shards", lambda: tokenize(args))


if __name__ == "__main__":
    raise SystemExit(main())
