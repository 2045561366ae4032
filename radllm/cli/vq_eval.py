"""`radllm vq-eval --vq VQ_DIR --manifest M --out DIR [--split test] [--classifier ENCODER_DIR] [--limit N]`"""

from __future__ import annotations

import argparse
import json

NAME = "vq-eval"
HELP = "measure a VQ tokenizer on held-out images: PSNR, SSIM, edges, codebook use, clinical agreement"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vq", required=True, help="VQ directory (model.safetensors + config.json)")
    parser.add_argument("--manifest", required=True, help="manifest JSONL")
    parser.add_argument("--out", required=True, help="output directory: metrics.json and reconstructions.png")
    parser.add_argument("--split", default="test", help="manifest split to evaluate (default test)")
    parser.add_argument("--classifier", default=None, help="CXR encoder directory for clinical_agreement (omitted: null)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N images")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from radllm.vq.evaluate import evaluate_vq

    metrics = evaluate_vq(
        args.vq, args.manifest, args.out, split=args.split, classifier=args.classifier, limit=args.limit,
        batch_size=args.batch_size, device=args.device, progress=not args.no_progress,
    )
    print(json.dumps(metrics, indent=2))
    return 0
