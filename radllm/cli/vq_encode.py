"""`radllm vq-encode --vq VQ_DIR (--manifest M | --images PATH ...) --out codes.jsonl [--batch-size 64]`"""

from __future__ import annotations

import argparse

NAME = "vq-encode"
HELP = "tokenize images with a trained VQ directory into JSONL (one line of codes per image)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vq", required=True, help="VQ directory (model.safetensors + config.json)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="manifest JSONL: encodes every image of every study")
    source.add_argument("--images", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument("--split", default=None, help="with --manifest: only this split (train/val/test)")
    parser.add_argument("--out", required=True, help="output JSONL (written atomically)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from radllm.vq.encode import encode_to_jsonl

    counts = encode_to_jsonl(
        args.vq, args.out, manifest=args.manifest, images=args.images, split=args.split,
        batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
    )
    print(f"encoded {counts['encoded']} images to {args.out} ({counts['skipped']} unreadable skipped)")
    return 0
