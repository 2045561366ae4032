"""`radllm vq-train --config configs/demo/vq.yaml [--set key=value ...] [--resume]`"""

from __future__ import annotations

import argparse
import json

from radllm.config import load_config

NAME = "vq-train"
HELP = "train the VQ-GAN image tokenizer in one process (data-parallel: deepspeed tools/train_vqgan.py)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML run config (see configs/demo/vq.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set schedule.max_steps=100 --set output_dir=runs/vq (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir (same as resume=auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    # Imported here so building the `radllm` parser stays light.
    from radllm.vq.train_config import VQTrainConfig
    from radllm.vq.training import train_vq

    overrides = [*args.overrides, *(["resume=auto"] if args.resume else [])]
    config = load_config(VQTrainConfig, args.config, overrides)
    summary = train_vq(config, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0
