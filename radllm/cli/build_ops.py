"""`radllm build-ops`: build DeepSpeed's CPU ops once, into radllm's extensions directory.

    DS_ACCELERATOR=cpu radllm build-ops        # what `make venv` runs on a machine without a GPU

The CPU comm op (ranks on one CPU machine) and DeepSpeedCPUAdam's op (optimizer offload,
`radllm.training.optim`). Without it the first `deepspeed` launches race to build them (~60 and
~45 s) behind a lock file that a killed launch leaves behind (see `radllm.training.comm_op`).
"""

from __future__ import annotations

import argparse

from radllm.training.comm_op import LOCK_TIMEOUT_ENV, build_cpu_adam_op, build_shm_op

NAME = "build-ops"
HELP = "build DeepSpeed's CPU comm op and CPU Adam op into radllm's torch extensions directory"


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
    print("DeepSpeedCPUAdam op ready (optimizer offload)" if build_cpu_adam_op()
          else "DeepSpeedCPUAdam cannot be built here: optimizer offload is unavailable")
    return 0
