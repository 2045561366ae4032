"""One generation run, as the CLI and `tools/generate.py` drive it: prepare, run a rank's share, merge.

    job = prepare_job(request)          # load + check model/tokenizer/VQ, list the input's units
    summary = job.run(rank, world_size) # this rank's missing records, appended batch by batch
    counts = job.merge()                # once every rank has finished: rank 0 writes the output

The library never talks to other processes: the entry point runs `run` on every rank, waits for
all of them, and calls `merge` on one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from radllm.errors import RadllmError
from radllm.generation import images, reports, vqa
from radllm.generation.inputs import load_inputs
from radllm.generation.mode import GenerationMode
from radllm.generation.model import Generator, load_generator
from radllm.generation.plan import BatchResult, RankSummary, Unit, run_units
from radllm.generation.records import KeyFn, existing_records, merge_parts
from radllm.generation.request import GenerateRequest
from radllm.generation.shuffle import shuffle_images, tag_records
from radllm.preemption import StopRequest

#: Every `radllm generate` mode, by name (each declared by its own module).
MODES: dict[str, GenerationMode] = {mode.name: mode for mode in (reports.MODE, images.MODE, vqa.MODE)}
TASKS = tuple(MODES)


def generation_mode(name: str) -> GenerationMode:
    """The mode `radllm generate NAME` runs.

    Raises:
        RadllmError: no such mode.
    """
    if name not in MODES:
        raise RadllmError(f"unknown generation task {name!r}; expected one of {TASKS}")
    return MODES[name]


@dataclass
class Job:
    request: GenerateRequest
    generator: Generator
    units: list[Unit]
    record_key: KeyFn
    process: Callable[[Sequence[Unit]], BatchResult]
    records_path: Path  # the JSONL file records go to (for images: the index inside the output directory)
    settings: dict = field(default_factory=dict)  # record fields that must match on resume

    def check_existing(self) -> None:
        """Refuse to resume into an output written with other decoding settings (it would mix two runs)."""
        expected = self.settings
        for record in existing_records(self.records_path):
            found = {k: record.get(k) for k in expected}
            if found != expected:
                raise RadllmError(
                    f"{self.records_path} (or its parts) holds records made with {found}, this run uses {expected}; "
                    "write to another --out, or delete the old output to start over"
                )

    def run(self, rank: int = 0, world_size: int = 1, stop: StopRequest | None = None) -> RankSummary:
        """Write this rank's missing records to its part file (after `check_existing`); a pending
        `stop` ends it between batches (`JobStopped`)."""
        self.check_existing()
        return run_units(
            self.units, self.records_path, self.record_key, self.process, rank=rank, world_size=world_size,
            batch_size=self.request.batch_size, progress=self.request.progress, desc=f"generate {self.request.task}", stop=stop,
        )

    def merge(self) -> dict[str, int]:
        """Merge every part into the output file, in input order (call once all ranks are done)."""
        return merge_parts(self.records_path, [u.key for u in self.units], self.record_key)


def prepare_job(request: GenerateRequest) -> Job:
    """Validate the request, load and cross-check the artifacts, and list the run's units.

    Raises:
        RadllmError: any bad option, path or artifact mismatch, before generation starts.
    """
    mode = generation_mode(request.task)
    request.validate()
    mode.check(request)
    gen = load_generator(request.model, request.vq, request.device, request.dtype)
    studies = load_inputs(request.input, gen.spec, request.split, need_images=mode.reads_images)
    if request.shuffle_images is not None:  # over the whole input, before ranks split it
        studies = shuffle_images(studies, request.shuffle_images)
    plan = mode.plan(request, gen, studies)
    job = Job(request, gen, plan.units, plan.record_key, plan.process, mode.records_path(request.out), plan.settings)
    if mode.reads_images:
        # Absent from unshuffled records, so an output of the other kind (or another seed) is refused on resume.
        job.settings["shuffle_images"] = request.shuffle_images
        if request.shuffle_images is not None:
            job.process = tag_records(job.process, request.shuffle_images)
    return job
