"""`GenerationMode`: one `radllm generate NAME`, declared by its own module (`reports`, `images`, `vqa`).

A mode says what it reads and writes and what it allows, and builds the work of a run
(`JobPlan`: units, the record key, the batch function, the settings a resumed output must share).
`radllm.generation.job` lists the modes (`MODES`) and runs whichever a request names; the CLI
builds one subcommand per mode. A new mode is its module plus one entry in `MODES`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError
from radllm.generation.inputs import StudyInput
from radllm.generation.model import Generator
from radllm.generation.plan import BatchResult, Unit
from radllm.generation.records import KeyFn
from radllm.generation.request import GenerateRequest


@dataclass
class JobPlan:
    """The work of one run, as a mode builds it from the loaded model and the input's studies."""

    units: list[Unit]
    record_key: KeyFn
    process: Callable[[Sequence[Unit]], BatchResult]
    settings: dict[str, Any] = field(default_factory=dict)  # record fields that must match on resume


def _records_at(out: Path) -> Path:
    return out


@dataclass(frozen=True)
class GenerationMode:
    """What one mode reads, allows and writes (each flag is checked by `check`, with the CLI's option names)."""

    name: str  # `radllm generate NAME`
    task: str  # the training task (`radllm.tasks` registry) whose prompt builders it calls
    help: str  # one line for `radllm generate --help`
    input_help: str  # what --input may be
    out_help: str  # what --out is
    plan: Callable[[GenerateRequest, Generator, list[StudyInput]], JobPlan]
    # The mode's own CLI options (the CLI adds those every mode shares; `decodes` adds the sampling ones).
    add_options: Callable[[argparse.ArgumentParser], None] | None = None
    decodes: str | None = None  # default --strategy of a mode that decodes tokens (None: it scores, e.g. VQA answers)
    reads_images: bool = True  # the input's studies must have images; the shuffled-image control applies
    needs_vq: bool = False  # it decodes codes into pixels: --vq is required
    guidance: bool = False  # --cfg-scale
    beam: bool = False  # --strategy beam
    candidates: bool = False  # --candidates
    instructions: Sequence[str] | None = None  # the stage-2 phrasings --template indexes (None: the mode checks its own)
    check_options: Callable[[GenerateRequest], None] | None = None  # anything else the mode refuses
    records_path: Callable[[Path], Path] = _records_at  # the JSONL records go to, from --out

    def check(self, request: GenerateRequest) -> None:
        """Refuse an option this mode does not take (RadllmError naming it), after `request.validate()`."""
        if self.instructions is not None and request.stage == 2 and not 0 <= request.template < len(self.instructions):
            raise RadllmError(f"--template {request.template}; stage-2 {self.name} instructions are numbered 0..{len(self.instructions) - 1}")
        if self.check_options is not None:
            self.check_options(request)
        if self.needs_vq and request.vq is None:
            raise RadllmError(f"generate {self.name} needs --vq VQ_DIR to decode codes into PNGs")
        if request.decoding.strategy == "beam" and not self.beam:
            raise RadllmError("beam search is for report generation")
        if request.cfg_scale != 1.0 and not self.guidance:
            raise RadllmError("--cfg-scale guides generated reports and images; VQA answers are scored, not generated")
        if request.candidates > 1 and not self.candidates:
            raise RadllmError(f"--candidates chooses among drawn images or report drafts; generate {self.name} takes none")
        if request.shuffle_images is not None and not self.reads_images:
            raise RadllmError("--shuffle-images is a control for reports and VQA (image generation has no input image)")
