"""`radllm tokenize`: manifest -> tokenized WebDataset shards, in one process or one per GPU.

    radllm tokenize --manifest data/phantoms/manifest.jsonl --vq runs/vq --tokenizer runs/tokenizer \
        --out data/shards --shard-size 1000 --batch-size 32
    deepspeed --num_gpus 8 --module radllm tokenize --manifest M --vq VQ --tokenizer TOK --out SHARDS
    deepspeed --num_gpus 8 tools/tokenize_shards.py --manifest M ...   # the same from a checkout (shim)

On a machine without GPUs the DeepSpeed launcher counts NUMA nodes as devices, so name the
process count explicitly (`--num_gpus` is an alias of `--num_accelerators`):

    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/tokenize_shards.py --manifest M ...

`torchrun --nproc_per_node 2 tools/tokenize_shards.py ...` works the same way. Each rank writes
every WORLD_SIZE-th shard (see `radllm.data.tokenize`) on cuda:LOCAL_RANK when `--device auto`
finds CUDA; the ranks then agree (one all-reduce) on whether all of them succeeded, and rank 0
merges the shard records into rejects.jsonl and index.json.
"""

from __future__ import annotations

import argparse

from radllm.cli import add_dist_timeout

NAME = "tokenize"
HELP = "VQ-encode the images and tokenize the reports of a manifest into WebDataset shards + index.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="study manifest (JSONL) to tokenize")
    parser.add_argument("--vq", required=True, help="VQ-GAN directory (safetensors + config.json)")
    parser.add_argument("--tokenizer", required=True, help="extended tokenizer directory (with radllm.json); must be built for --vq")
    parser.add_argument("--out", required=True, help="shards directory; rerunning skips shards that are already complete")
    parser.add_argument("--shard-size", type=int, default=1000, help="studies per shard (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per VQ encoder batch (default: 32)")
    parser.add_argument("--device", default="auto", help="torch device for the VQ encoder; auto = cuda if available else cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="image-decoding worker processes (default: 2; 0 = decode inline)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dist_timeout(parser)


def run(args: argparse.Namespace) -> int:
    """This rank's shards, then (rank 0, once every rank succeeded) the index."""
    from radllm.data.tokenize import tokenize_shards, write_index
    from radllm.preemption import StopRequest
    from radllm.ranks import process_group, run_then_agree

    stop = StopRequest()  # a signal or the launcher's exit: finish the shard, then exit 75
    stop.install()
    with process_group(timeout_hours=args.dist_timeout_hours) as ranks:
        summary = run_then_agree(
            lambda: tokenize_shards(
                args.manifest, args.vq, args.tokenizer, args.out,
                shard_size=args.shard_size, batch_size=args.batch_size, device=ranks.device_for(args.device),
                num_workers=args.num_workers, rank=ranks.rank, world_size=ranks.world_size, progress=not args.no_progress,
                stop=stop,
            ),
            ranks,
            kept="complete shards are kept",
        )
        if ranks.rank == 0:
            index = write_index(args.manifest, args.vq, args.tokenizer, args.out, shard_size=args.shard_size)
            counts = ", ".join(f"{split}: {index.num_samples(split)}" for split in index.splits)
            # The shard counts are this rank's own: only a world of one reports them as the run's.
            shards = ""
            if ranks.world_size == 1:
                shards = f"{summary.shards_written} shard(s) written, {summary.shards_skipped} already complete; "
            print(f"{args.out}: {shards}samples {counts}; {index.num_rejects} rejected image(s) in rejects.jsonl")
    return 0
