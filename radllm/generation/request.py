"""`GenerateRequest`: everything one `radllm generate MODE ...` run needs, and the rules every mode shares.

What a mode allows (guidance, beam search, candidates, the shuffled-image control) is declared by
its `radllm.generation.mode.GenerationMode`; `GenerationMode.check` applies those declarations to
a request, so this module knows no mode by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from radllm.errors import RadllmError
from radllm.generation.sampling import DecodingConfig
from radllm.labels import OBSERVATIONS
from radllm.tasks.example import STAGES
from radllm.tasks.image_generation import IMAGE_CONDITIONS


@dataclass
class GenerateRequest:
    """Everything a run needs (what `radllm generate TASK ...` parses)."""

    task: str  # the generation mode: reports | images | vqa (radllm.generation.job.MODES)
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
    candidates: int = 1  # images / reports: drawings or drafts per study, the best kept (generation.self_check, generation.report_drafts)
    draft_unit: str = "report"  # reports with candidates > 1: whole second sections or sentence by sentence (generation.reports)
    observations: Sequence[str] = OBSERVATIONS  # vqa only
    questions: Path | None = None  # vqa only: JSONL of questions instead of the templates
    shuffle_images: int | None = None  # reports/vqa: seed of the shuffled-image control (radllm.generation.shuffle)
    progress: bool = True

    def validate(self) -> "GenerateRequest":
        """Check the options every mode shares (the mode checks the rest); returns self.

        Raises:
            RadllmError: naming the option.
        """
        if self.stage not in STAGES:
            raise RadllmError(f"--stage {self.stage}; expected one of {STAGES}")
        if self.batch_size < 1 or self.max_views < 1:
            raise RadllmError(f"--batch-size {self.batch_size} and --max-views {self.max_views} must be at least 1")
        self.decoding.validate()
        if not (math.isfinite(self.cfg_scale) and self.cfg_scale >= 0):
            raise RadllmError(f"--cfg-scale {self.cfg_scale}; expected a finite scale >= 0 (1 = no guidance)")
        if self.cfg_scale != 1.0 and self.decoding.strategy == "beam":
            raise RadllmError("--cfg-scale with --strategy beam is not supported; use greedy or sampled decoding")
        if self.candidates < 1:
            raise RadllmError(f"--candidates {self.candidates}; expected at least 1")
        if self.image_condition is not None and self.image_condition not in IMAGE_CONDITIONS:
            raise RadllmError(f"--condition {self.image_condition!r}; expected one of {list(IMAGE_CONDITIONS)}")
        if self.shuffle_images is not None and self.shuffle_images < 0:
            raise RadllmError(f"--shuffle-images {self.shuffle_images}; expected a seed >= 0")
        return self
