"""Join the process group the launcher prepared, run a `Trainer`, and leave cleanly.

Kept apart from `radllm/train.py` so the entry point imports nothing heavy before the config is
checked. Ranks come from the environment the launcher sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT); a plain `python radllm/train.py` runs as a world of one.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch

from radllm.errors import RadllmError
from radllm.training.comm_op import prepare_op_builds, release_shm_segment
from radllm.training.config import TrainConfig
from radllm.training.preflight import Preflight
from radllm.training.run_lock import RunLock


def run_training(config: TrainConfig, checked: Preflight, progress: bool = True) -> dict[str, Any]:
    """Initialise distributed state (nccl on GPU, gloo on CPU), train, tear down."""
    import deepspeed
    import deepspeed.comm as dist

    from radllm.training.loop import Trainer

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    prepare_op_builds()
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    lock = None
    try:
        dist.barrier()  # every rank has mapped the CPU comm op's segments: their names can go
        release_shm_segment(dist.get_rank())
        lock = _lock_run_dir(config.run_dir, dist.get_rank())
        trainer = Trainer(config, checked, dist.get_rank(), dist.get_world_size(), progress=progress)
        summary = trainer.train()
        # Leave together: a rank that tears down its process group while another is still in
        # its last collective (rank 0 exporting) can abort at exit ("terminate called without
        # an active exception"), turning a finished run into a failed one.
        dist.barrier()
        return summary
    finally:
        if lock is not None:
            lock.release()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _lock_run_dir(run_dir: str, rank: int) -> RunLock | None:
    """Rank 0 locks the run directory (`RunLock`); every rank learns the outcome, so all refuse together.

    Raises:
        RadllmError: another live job holds the run directory.
    """
    import deepspeed.comm as dist

    lock, refusal = None, None
    if rank == 0:
        try:
            lock = RunLock.acquire(run_dir)
        except RadllmError as err:
            refusal = err
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")  # nccl: on the GPU
    held = torch.tensor([0.0 if refusal else 1.0], device=device)
    dist.all_reduce(held, op=dist.ReduceOp.MIN)
    if refusal is not None:
        raise refusal
    if held.item() == 0:
        raise RadllmError(f"run_dir {run_dir} is in use by another live training job (rank 0 says which)")
    return lock
