"""The work of a generation run: units (one output record each), split by rank, done in batches.

A unit is one study for reports and images, one (study, question) for VQA. Units carry the index
of their study in the input: rank r takes the units of studies i ≡ r (mod world_size), so a
study's images are encoded on one rank only. `run_units` skips units whose key is already in the
output (resume), processes the rest `batch_size` at a time and appends each batch's records to
the rank's part file (see `radllm.generation.records`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from radllm.generation.inputs import StudyInput
from radllm.generation.records import KeyFn, PartWriter, Record, done_keys
from radllm.preemption import JobStopped, StopRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One output record to produce."""

    key: str  # resume key, equal to the task's record_key of the record it produces
    study_index: int  # position of the study in the input (decides the rank)
    study: StudyInput
    observation: str = ""  # VQA only
    question: str = ""  # VQA only


@dataclass
class BatchResult:
    records: list[Record]
    errors: list[str] = field(default_factory=list)  # units left out (unreadable images), one message each


@dataclass
class RankSummary:
    """What one rank did (printed by the CLI, all-reduced nowhere: each rank reports its own)."""

    rank: int
    units: int = 0  # units assigned to this rank
    already_done: int = 0  # skipped because a record existed (resume)
    written: int = 0
    failed: int = 0  # left out: unreadable images
    seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def study_units(studies: Sequence[StudyInput]) -> list[Unit]:
    """One unit per study, keyed by study id."""
    return [Unit(study.study_id, index, study) for index, study in enumerate(studies)]


def run_units(
    units: Sequence[Unit],
    out: Path,
    record_key: KeyFn,
    process: Callable[[Sequence[Unit]], BatchResult],
    *,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "generate",
    stop: StopRequest | None = None,
) -> RankSummary:
    """Produce this rank's missing records, a batch at a time (see the module docstring).

    Raises:
        JobStopped: `stop` became pending; checked before each batch, so every record written is
            complete and the same command continues with the next one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    mine = [u for u in units if u.study_index % world_size == rank]
    writer = PartWriter(out, rank, world_size)  # repairs a torn tail before anything is read
    done = done_keys(out, record_key)
    todo = [u for u in mine if u.key not in done]
    summary = RankSummary(rank=rank, units=len(mine), already_done=len(mine) - len(todo))
    if summary.already_done:
        log.info("rank %d: %d of %d records already written, resuming", rank, summary.already_done, len(mine))
    start = time.perf_counter()
    label = desc if world_size == 1 else f"{desc} [rank {rank}]"
    with tqdm(total=len(todo), desc=label, unit="sample", disable=not progress, position=rank if world_size > 1 else None) as bar:
        for first in range(0, len(todo), batch_size):
            if stop is not None and stop.pending:
                raise JobStopped(f"stopped by {stop.reason} after {summary.written} new record(s) of this rank's "
                                 f"{len(todo)}; every record written is complete: run the same command again to continue")
            batch = todo[first : first + batch_size]
            result = process(batch)
            writer.append(result.records)
            summary.written += len(result.records)
            summary.failed += len(result.errors)
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - start
    return summary
