"""`radllm vq-eval --vq VQ_DIR --manifest M --out DIR [--split test] [--classifier ENCODER_DIR] [--limit N] [--no-probe]`"""

from __future__ import annotations

import argparse
import json

NAME = "vq-eval"
HELP = "measure a VQ tokenizer on held-out images: PSNR, SSIM, edges, codebook use, clinical agreement, code probe"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vq", required=True, help="VQ directory (model.safetensors + config.json)")
    parser.add_argument("--manifest", required=True, help="manifest JSONL")
    parser.add_argument("--out", required=True, help="output directory: metrics.json and reconstructions.png")
    parser.add_argument("--split", default="test", help="manifest split to evaluate (default test)")
    parser.add_argument("--classifier", default=None, help="CXR encoder directory for clinical_agreement (omitted: null)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N images (and probe at most N studies)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    probe = parser.add_argument_group("code probe", "a small classifier trained on the train split's codes, F1 on --split's codes")
    probe.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                       help="run the code probe (default: when the train studies carry labels)")
    probe.add_argument("--probe-train-limit", type=int, default=None, help="train the probe on at most N train studies")
    probe.add_argument("--probe-epochs", type=int, default=None, help="probe training epochs (default: radllm.vq.probe.ProbeConfig)")
    probe.add_argument("--probe-seed", type=int, default=None, help="probe seed (default: radllm.vq.probe.ProbeConfig)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from radllm.vq.evaluate import evaluate_vq
    from radllm.vq.probe import ProbeConfig

    chosen = {"epochs": args.probe_epochs, "seed": args.probe_seed}
    probe_config = dataclasses.replace(ProbeConfig(), **{key: value for key, value in chosen.items() if value is not None})
    metrics = evaluate_vq(
        args.vq, args.manifest, args.out, split=args.split, classifier=args.classifier, limit=args.limit,
        batch_size=args.batch_size, device=args.device, progress=not args.no_progress, probe=args.probe,
        probe_config=probe_config, probe_train_limit=args.probe_train_limit,
    )
    print(json.dumps(metrics, indent=2))
    return 0
