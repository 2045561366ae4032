"""`radllm build-ops`: build DeepSpeed's CPU comm op once, into radllm's extensions directory.

    DS_ACCELERATOR=cpu radllm build-ops        # what `make venv` runs on a machine without a GPU

Without it the first `deepspeed` launches race to build the op (~60 s) behind a lock file that a
killed launch leaves behind (see `radllm.training.comm_op`).
"""

from __future__ import annotations

import argparse

from radllm.training.comm_op import LOCK_TIMEOUT_ENV, build_shm_op

NAME = "build-ops"
HELP = "build DeepSpeed's CPU shared-memory comm op into radllm's torch extensions directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Builds into $TORCH_EXTENSIONS_DIR, by default <installation prefix>/torch_extensions (the venv). "
        "A build lock that no live process holds is removed first; a live one is awaited at most "
        f"${LOCK_TIMEOUT_ENV} seconds (default 300). On an accelerator without the op (CUDA uses NCCL) "
        "there is nothing to build and the command says so."
    )


def run(args: argparse.Namespace) -> int:
    built = build_shm_op()
    print(f"DeepSpeed CPU comm op ready in {built}" if built else "no CPU comm op for this DeepSpeed accelerator: nothing to build")
    return 0
