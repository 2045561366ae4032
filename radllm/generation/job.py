"""One generation run, as the CLI and `tools/generate.py` drive it: prepare, run a rank's share, merge.

    job = prepare_job(request)          # load + check model/tokenizer/VQ, list the input's units
    summary = job.run(rank, world_size) # this rank's missing records, appended batch by batch
    counts = job.merge()                # once every rank has finished: rank 0 writes the output

The library never talks to other processes: the entry point runs `run` on every rank, waits for
all of them, and calls `merge` on one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError
from radllm.generation import images, reports, vqa
from radllm.generation.inputs import load_inputs
from radllm.generation.model import Generator, load_generator
from radllm.generation.plan import BatchResult, RankSummary, Unit, run_units
from radllm.generation.records import KeyFn, existing_records, merge_parts
from radllm.generation.sampling import DecodingConfig
from radllm.generation.shuffle import shuffle_images, tag_records
from radllm.labels import OBSERVATIONS
from radllm.preemption import StopRequest
from radllm.tasks.example import STAGES
from radllm.tasks.image_generation import FULL_REPORT, IMAGE_CONDITION_KEY, IMAGE_CONDITIONS, IMAGE_INSTRUCTIONS
from radllm.tasks.report_generation import REPORT_INSTRUCTIONS

TASKS = ("reports", "images", "vqa")


@dataclass
class GenerateRequest:
    """Everything a run needs (what `radllm generate TASK ...` parses)."""

    task: str  # reports | images | vqa
    model: Path
    input: Path
    out: Path  # reports/vqa: the JSONL file; images: a directory (PNGs + images.jsonl)
    vq: Path | None = None
    split: str | None = None
    batch_size: int = 16
    device: str = "cpu"
    dtype: str = "auto"
    stage: int = 2  # prompt format the model was trained with (1: plain pairs, 2: instructions)
    template: int = 0  # stage-2 instruction / VQA question phrasing index
    max_views: int = 2
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    cfg_scale: float = 1.0  # images and reports (1 = no guidance)
    image_condition: str | None = None  # images: report | impression; None = the model's (IMAGE_CONDITION_KEY)
    candidates: int = 1  # images: drawings per study, the best by the model's own reading kept (radllm.generation.self_check)
    observations: Sequence[str] = OBSERVATIONS  # vqa only
    questions: Path | None = None  # vqa only: JSONL of questions instead of the templates
    shuffle_images: int | None = None  # reports/vqa: seed of the shuffled-image control (radllm.generation.shuffle)
    progress: bool = True

    def validate(self) -> "GenerateRequest":
        if self.task not in TASKS:
            raise RadllmError(f"unknown generation task {self.task!r}; expected one of {TASKS}")
        if self.stage not in STAGES:
            raise RadllmError(f"--stage {self.stage}; expected one of {STAGES}")
        if self.batch_size < 1 or self.max_views < 1:
            raise RadllmError(f"--batch-size {self.batch_size} and --max-views {self.max_views} must be at least 1")
        self.decoding.validate()
        bank = {"reports": REPORT_INSTRUCTIONS, "images": IMAGE_INSTRUCTIONS}.get(self.task)
        if bank is not None and self.stage == 2 and not 0 <= self.template < len(bank):
            raise RadllmError(f"--template {self.template}; stage-2 {self.task} instructions are numbered 0..{len(bank) - 1}")
        if self.task == "images":
            images.check_decoding(self.decoding)
            if self.vq is None:
                raise RadllmError("generate images needs --vq VQ_DIR to decode codes into PNGs")
        elif self.decoding.strategy == "beam" and self.task != "reports":
            raise RadllmError("beam search is for report generation")
        if not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise RadllmError(f"--cfg-scale {self.cfg_scale}; expected a finite scale >= 0 (1 = no guidance)")
        if self.cfg_scale != 1.0 and self.task == "vqa":
            raise RadllmError("--cfg-scale guides generated reports and images; VQA answers are scored, not generated")
        if self.cfg_scale != 1.0 and self.decoding.strategy == "beam":
            raise RadllmError("--cfg-scale with --strategy beam is not supported; use greedy or sampled decoding")
        if self.candidates < 1:
            raise RadllmError(f"--candidates {self.candidates}; expected at least 1")
        if self.candidates > 1 and self.task != "images":
            raise RadllmError("--candidates chooses among drawn images; it is for generate images")
        if self.image_condition is not None and self.image_condition not in IMAGE_CONDITIONS:
            raise RadllmError(f"--condition {self.image_condition!r}; expected one of {list(IMAGE_CONDITIONS)}")
        if self.shuffle_images is not None and self.task == "images":
            raise RadllmError("--shuffle-images is a control for reports and VQA (image generation has no input image)")
        if self.shuffle_images is not None and self.shuffle_images < 0:
            raise RadllmError(f"--shuffle-images {self.shuffle_images}; expected a seed >= 0")
        return self

    @property
    def records_path(self) -> Path:
        """The JSONL file records go to (for images: the index inside the output directory)."""
        return self.out / images.INDEX_NAME if self.task == "images" else self.out


def image_condition_of(model_config: Any) -> str:
    """The image condition a model was trained with: its config.json's `IMAGE_CONDITION_KEY`, or
    the whole report for models exported before the option (or by other tools).

    Raises:
        RadllmError: the recorded value is not a known condition.
    """
    condition = getattr(model_config, IMAGE_CONDITION_KEY, FULL_REPORT)
    if condition not in IMAGE_CONDITIONS:
        raise RadllmError(f"model config {IMAGE_CONDITION_KEY} = {condition!r}; expected one of {list(IMAGE_CONDITIONS)}")
    return condition


@dataclass
class Job:
    request: GenerateRequest
    generator: Generator
    units: list[Unit]
    record_key: KeyFn
    process: Callable[[Sequence[Unit]], BatchResult]
    settings: dict = field(default_factory=dict)  # record fields that must match on resume

    def check_existing(self) -> None:
        """Refuse to resume into an output written with other decoding settings (it would mix two runs)."""
        expected = self.settings
        for record in existing_records(self.request.records_path):
            found = {k: record.get(k) for k in expected}
            if found != expected:
                raise RadllmError(
                    f"{self.request.records_path} (or its parts) holds records made with {found}, this run uses {expected}; "
                    "write to another --out, or delete the old output to start over"
                )

    def run(self, rank: int = 0, world_size: int = 1, stop: StopRequest | None = None) -> RankSummary:
        """Write this rank's missing records to its part file (after `check_existing`); a pending
        `stop` ends it between batches (`JobStopped`)."""
        self.check_existing()
        return run_units(
            self.units, self.request.records_path, self.record_key, self.process, rank=rank, world_size=world_size,
            batch_size=self.request.batch_size, progress=self.request.progress, desc=f"generate {self.request.task}", stop=stop,
        )

    def merge(self) -> dict[str, int]:
        """Merge every part into the output file, in input order (call once all ranks are done)."""
        return merge_parts(self.request.records_path, [u.key for u in self.units], self.record_key)


def prepare_job(request: GenerateRequest) -> Job:
    """Validate the request, load and cross-check the artifacts, and list the run's units.

    Raises:
        RadllmError: any bad option, path or artifact mismatch, before generation starts.
    """
    request.validate()
    gen = load_generator(request.model, request.vq, request.device, request.dtype)
    studies = load_inputs(request.input, gen.spec, request.split, need_images=request.task != "images")
    r = request
    if r.task == "images":
        condition = r.image_condition or image_condition_of(gen.model.config)
        return Job(r, gen, images.units(studies), images.record_key,
                   partial(images.process, gen, out_dir=r.out, decoding=r.decoding, cfg_scale=r.cfg_scale, stage=r.stage, template=r.template,
                           condition=condition, candidates=r.candidates),
                   {"cfg_scale": r.cfg_scale, "seed": r.decoding.seed, "condition": condition, "candidates": r.candidates})
    if r.shuffle_images is not None:  # over the whole input, before ranks split it
        studies = shuffle_images(studies, r.shuffle_images)
    if r.task == "reports":
        job = Job(r, gen, reports.units(studies), reports.record_key,
                  partial(reports.process, gen, decoding=r.decoding, stage=r.stage, template=r.template, max_views=r.max_views,
                          cfg_scale=r.cfg_scale),
                  {"decoding": r.decoding.describe(), "cfg_scale": r.cfg_scale})
    else:
        if r.questions is not None:
            units = vqa.question_units(studies, r.questions)
        else:
            units = vqa.template_units(studies, r.observations, r.template)
        job = Job(r, gen, units, vqa.record_key, partial(vqa.process, gen, max_views=r.max_views))
    # Absent from unshuffled records, so an output of the other kind (or another seed) is refused on resume.
    job.settings["shuffle_images"] = r.shuffle_images
    if r.shuffle_images is not None:
        job.process = tag_records(job.process, r.shuffle_images)
    return job
