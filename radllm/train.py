"""`deepspeed radllm/train.py ...` (a checkout) and `deepspeed --module radllm.train ...`: the same as `radllm train ...`.

    deepspeed --num_gpus 8 radllm/train.py --config configs/train/llama7b_stage1.yaml [--set k=v ...] [--resume auto]

Kept as the LLM trainer's documented launch forms (slurm's pre-emption notice finds the ranks by
this script's path); everything is in `radllm.cli.train`.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script by the launcher: make `radllm` importable from the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from radllm import cli  # noqa: E402

COMMAND = "train"


def main(argv: list[str] | None = None) -> int:
    """`radllm train` with these arguments (None: this process's own, after the launcher's `--local_rank`)."""
    return cli.main(argv, command=COMMAND)


if __name__ == "__main__":
    raise SystemExit(main())
