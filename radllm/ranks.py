"""What every multi-process tool does around its own work: join the launcher's process group,
let all ranks agree on success before rank 0 finalises, and turn errors into exit codes.

`tools/generate.py` and `tools/tokenize_shards.py` run under `deepspeed` / `torchrun` / slurm;
ranks come from the environment those launchers set (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT), and a plain `python tool.py` runs as a world of one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from radllm.errors import RadllmError

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


@contextmanager
def process_group(default_port: int, timeout_hours: float) -> Iterator[Ranks]:
    """Join the process group (nccl on GPU, gloo on CPU) for the duration of the block.

    `timeout_hours` bounds how long finished ranks wait for the slowest one: torch's default of
    30 minutes is too short for a rank that got the largest share of a long job.
    """
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(default_port))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.is_available())
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
    still takes part in it (otherwise the others would wait forever), then re-raises.

    Args:
        kept: what survives a failure, for the message on the ranks that did not fail.
    """
    error: Exception | None = None
    result = None
    try:
        result = work()
    except Exception as err:  # re-raised below, after telling the other ranks
        error = err
    ok = torch.tensor([0 if error else 1], device=ranks.device)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if error is not None:
        raise error
    if not ok.item():
        raise RadllmError(f"another rank failed; rerun to finish ({kept})")
    return result  # type: ignore[return-value]


def exit_code(name: str, body: Callable[[], None]) -> int:
    """Run a tool's body; a `RadllmError` is printed with the rank and becomes exit status 2."""
    try:
        body()
    except RadllmError as err:
        print(f"{name} (rank {os.environ.get('RANK', 0)}): error: {err}", file=sys.stderr)
        return 2
    return 0
