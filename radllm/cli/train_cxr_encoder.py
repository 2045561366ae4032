"""`radllm train-cxr-encoder --config configs/demo/cxr_encoder.yaml [--set key=value ...]`"""

from __future__ import annotations

import argparse
import json

from radllm.cli import add_run_config
from radllm.config import load_config
from radllm.encoders.train_config import CXREncoderTrainConfig

NAME = "train-cxr-encoder"
HELP = "train the small-cnn chest X-ray classifier (feature loss / clinical agreement) on a labelled manifest"


def configure(parser: argparse.ArgumentParser) -> None:
    add_run_config(parser, "configs/demo/cxr_encoder.yaml", "optim.epochs=5 --set out_dir=runs/enc")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    # Imported here so building the `radllm` parser never depends on the image-decoding stack.
    from radllm.encoders.training import train_cxr_encoder

    config = load_config(CXREncoderTrainConfig, args.config, args.overrides)
    metrics = train_cxr_encoder(config, progress=not args.no_progress)
    summary = {split: metrics[split]["macro"] for split in ("val", "test") if metrics[split] is not None}
    print(json.dumps({"out_dir": config.out_dir, "train_seconds": metrics["train"]["seconds"], **summary}, indent=2))
    return 0
