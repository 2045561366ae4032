"""What every multi-rank `radllm` subcommand does around its own work: join the launcher's process
group, and let all ranks agree on success before rank 0 finalises.

`radllm generate`, `radllm tokenize` and `radllm vq-train` run as one process by default; started
by `deepspeed` (`deepspeed --module radllm generate ...`, or `deepspeed tools/generate.py ...` from a
checkout), `torchrun` or slurm, they read their place from the environment the launcher sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT). A world of one joins no process group, so it needs no
rendezvous port and two single-process runs on one machine never collide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from radllm.errors import RadllmError
from radllm.preemption import JobStopped

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the launch, and the device it should use."""

    rank: int
    world_size: int
    local_rank: int
    cuda: bool

    @property
    def device(self) -> str:
        return f"cuda:{self.local_rank}" if self.cuda else "cpu"

    def device_for(self, requested: str) -> str:
        """The device for a `--device` value: in a multi-rank launch `auto` means this rank's own GPU
        (plain `auto` would put every rank of a node on cuda:0); anything else is kept as given."""
        return self.device if requested == "auto" and self.cuda and self.world_size > 1 else requested


@contextmanager
def process_group(timeout_hours: float, cuda_allowed: bool = True) -> Iterator[Ranks]:
    """Join the launcher's process group (nccl on GPU, gloo on CPU) for the duration of the block;
    without a launcher (WORLD_SIZE unset or 1) the block runs as a world of one, joining nothing.

    Args:
        timeout_hours: how long finished ranks wait for the slowest one; torch's default of
            30 minutes is too short for a rank that got the largest share of a long job.
        cuda_allowed: False when the job was told to run on CPU, so that the group uses gloo.
    """
    ranks = Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)),
                  cuda_allowed and torch.cuda.is_available())
    if ranks.world_size == 1:
        yield ranks
        return
    if ranks.cuda:
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if ranks.cuda else "gloo", timeout=timedelta(hours=timeout_hours))
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


def run_then_agree(work: Callable[[], T], ranks: Ranks, kept: str) -> T:
    """Run this rank's `work`, then wait until every rank has finished; fail if any rank failed.

    The all-reduce doubles as the barrier before rank 0 merges or indexes: a rank that raised
    still takes part in it (otherwise the others would wait forever), then re-raises. A rank that
    stopped on request (`JobStopped`) makes every rank raise `JobStopped` (exit 75), unless some
    rank failed outright.

    Args:
        kept: what survives a failure, for the message on the ranks that did not fail.
    """
    if ranks.world_size == 1:
        return work()
    error: Exception | None = None
    result = None
    try:
        result = work()
    except Exception as err:  # re-raised below, after telling the other ranks
        error = err
    stopped = isinstance(error, JobStopped)
    outcome = torch.tensor([int(error is not None and not stopped), int(stopped)], device=ranks.device)  # [failed, stopped]
    dist.all_reduce(outcome, op=dist.ReduceOp.MAX)
    if error is not None:
        raise error
    if outcome[0].item():
        raise RadllmError(f"another rank failed; rerun to finish ({kept})")
    if outcome[1].item():
        raise JobStopped(f"another rank was asked to stop; rerun to finish ({kept})")
    return result  # type: ignore[return-value]
