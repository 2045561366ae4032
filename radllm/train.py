"""Train the LLM (one stage) with DeepSpeed: the entry point the `deepspeed` launcher starts on every rank.

    deepspeed --num_gpus 8 radllm/train.py --config configs/train/llama7b_stage1.yaml [--set k=v ...] [--resume auto]
    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 radllm/train.py --config configs/train/tiny_stage1.yaml
    deepspeed --no_ssh --num_nodes N --node_rank R --master_addr HOST --master_port PORT --hostfile H --num_gpus 8 radllm/train.py ...

The config (and every file it names) is checked before the process group starts; errors exit 2.
Everything else is `radllm.training.loop.Trainer`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

if __package__ in (None, ""):  # run as a script by the launcher: make `radllm` importable from the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from radllm.config import load_config  # noqa: E402
from radllm.errors import RadllmError  # noqa: E402
from radllm.training.config import TrainConfig  # noqa: E402
from radllm.training.preemption import PREEMPTED_EXIT_CODE, Preempted  # noqa: E402
from radllm.training.preflight import preflight  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML run config (see configs/train/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--resume", default=None, help="auto (newest complete checkpoint in run_dir), never, or a checkpoint directory; default: the config's `resume`")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # passed by the deepspeed launcher
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rank = int(os.environ.get("RANK", 0))
    try:
        config = load_config(TrainConfig, args.config, [*args.overrides, *([f"resume={args.resume}"] if args.resume else [])])
        checked = preflight(config)
        from radllm.training.launch import run_training

        summary = run_training(config, checked, progress=not args.no_progress)
    except RadllmError as err:
        print(f"train.py (rank {rank}): error: {err}", file=sys.stderr)
        return 2
    except Preempted as stop:
        print(f"train.py (rank {rank}): {stop}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    if rank == 0:
        print(json.dumps(summary, indent=2))
    return 0


def exit_now(status: int) -> None:
    """Leave without interpreter finalization once the work is done and every rank has met.

    After the final barrier and `destroy_process_group`, the C++ destructors of process groups
    and of the engine's communication objects still run at interpreter exit, and one of them can
    abort a rank whose peer has already closed its sockets ("terminate called without an active
    exception": a 2-rank CPU run that had finished and exported exited 250 this way in CI).
    Nothing is left to finalize by then (metrics and tensorboard files are closed, the export and
    checkpoints are written atomically), so flush the streams and logs and exit directly.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
