"""`radllm train`: one stage of LLM training with DeepSpeed, one process per rank.

    deepspeed --num_gpus 8 --module radllm train --config configs/train/llama7b_stage1.yaml [--set k=v ...] [--resume auto]
    deepspeed --num_gpus 8 radllm/train.py --config ...        # the same from a checkout (shim)
    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 radllm/train.py --config configs/train/tiny_stage1.yaml
    deepspeed --no_ssh --num_nodes N --node_rank R --master_addr HOST --master_port PORT --hostfile H --num_gpus 8 radllm/train.py ...

The config (and every file it names) is checked before the process group starts; errors exit 2.
A pre-empted run (SIGUSR1/SIGTERM) saves a checkpoint and exits with `PREEMPTED_EXIT_CODE` (75).
Everything else is `radllm.training.launch.run_training`; without a launcher it is a world of one.
"""

from __future__ import annotations

import argparse
import json
import os

from radllm.cli import add_run_config
from radllm.config import load_config

NAME = "train"
HELP = "train the LLM (one stage) with DeepSpeed: run under `deepspeed --module radllm train` for several ranks"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_run_config(parser, "configs/train/", "optim.lr=1e-5")
    parser.add_argument("--resume", default=None, help="auto (newest complete checkpoint in run_dir), never, or a checkpoint "
                                                       "directory; default: the config's `resume`")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(finalize_at_exit=False)  # see radllm.cli.exit_now


def run(args: argparse.Namespace) -> int:
    # Imported here so building the `radllm` parser stays light; run_training (deepspeed) only once the config is checked.
    from radllm.training.config import TrainConfig
    from radllm.training.preflight import preflight

    rank = int(os.environ.get("RANK", 0))
    config = load_config(TrainConfig, args.config, [*args.overrides, *([f"resume={args.resume}"] if args.resume else [])])
    checked = preflight(config)
    from radllm.training.launch import run_training

    summary = run_training(config, checked, progress=not args.no_progress)  # Preempted: exit 75 (radllm.cli.main)
    if rank == 0:
        print(json.dumps(summary, indent=2))
    return 0
