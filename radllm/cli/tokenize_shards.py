"""`radllm tokenize`: manifest -> tokenized WebDataset shards (one process).

    radllm tokenize --manifest data/phantoms/manifest.jsonl --vq runs/vq --tokenizer runs/tokenizer \
        --out data/shards --shard-size 1000 --batch-size 32

For several GPUs or processes use `deepspeed tools/tokenize_shards.py` with the same arguments.
"""

from __future__ import annotations

import argparse

from radllm.data.tokenize import tokenize_shards, write_index

NAME = "tokenize"
HELP = "VQ-encode the images and tokenize the reports of a manifest into WebDataset shards + index.json"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments shared with `tools/tokenize_shards.py`."""
    parser.add_argument("--manifest", required=True, help="study manifest (JSONL) to tokenize")
    parser.add_argument("--vq", required=True, help="VQ-GAN directory (safetensors + config.json)")
    parser.add_argument("--tokenizer", required=True, help="extended tokenizer directory (with radllm.json); must be built for --vq")
    parser.add_argument("--out", required=True, help="shards directory; rerunning skips shards that are already complete")
    parser.add_argument("--shard-size", type=int, default=1000, help="studies per shard (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per VQ encoder batch (default: 32)")
    parser.add_argument("--device", default="auto", help="torch device for the VQ encoder; auto = cuda if available else cpu")
    parser.add_argument("--num-workers", type=int, default=2, help="image-decoding worker processes (default: 2; 0 = decode inline)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    summary = tokenize_shards(
        args.manifest,
        args.vq,
        args.tokenizer,
        args.out,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        device=args.device,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    index = write_index(args.manifest, args.vq, args.tokenizer, args.out, shard_size=args.shard_size)
    counts = ", ".join(f"{split}: {index.num_samples(split)}" for split in index.splits)
    print(
        f"{args.out}: {summary.shards_written} shard(s) written, {summary.shards_skipped} already complete; "
        f"samples {counts}; {index.num_rejects} rejected image(s) in rejects.jsonl"
    )
    return 0
