"""`TaskMixConfig`: which tasks a training stage draws and how their examples are built.

It is part of the trainer's run config (loaded through `radllm.config.load_config`), e.g.

    tasks:
      stage: 2
      weights: {report_generation: 1.0, image_generation: 1.0, vqa: 0.5, text_lm: 0.0}
      cfg_drop_prob: 0.1

Weights are relative (they need not sum to 1); a weight of 0 switches a task off. YAML keys are
merged into the defaults, so a task left out keeps its default weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from radllm.errors import RadllmError

REPORT_GENERATION = "report_generation"
IMAGE_GENERATION = "image_generation"
VQA = "vqa"
TEXT_LM = "text_lm"
TASK_NAMES: tuple[str, ...] = (REPORT_GENERATION, IMAGE_GENERATION, VQA, TEXT_LM)
STAGES = (1, 2)
AS_WRITTEN = "as_written"
IMPRESSION_FIRST = "impression_first"
REPORT_FORMATS = (AS_WRITTEN, IMPRESSION_FIRST)
FULL_REPORT = "report"
IMPRESSION = "impression"
IMAGE_CONDITIONS = (FULL_REPORT, IMPRESSION)
#: Key of an exported model's config.json holding the `image_condition` it was trained with, so
#: that `radllm generate images` builds the same prompts without being told (HF keeps unknown keys).
IMAGE_CONDITION_KEY = "radllm_image_condition"


def _default_weights() -> dict[str, float]:
    return {REPORT_GENERATION: 1.0, IMAGE_GENERATION: 1.0, VQA: 0.0, TEXT_LM: 0.0}


@dataclass
class TaskMixConfig:
    """Options of the task mix (shared by trainer stage 1 and stage 2)."""

    stage: int = 1  # 1: plain image<->report pairs; 2: instruction templates
    weights: dict[str, float] = field(default_factory=_default_weights)
    cfg_drop_prob: float = 0.1  # fraction of image-generation examples whose report is dropped
    # Fraction of report-generation examples whose image blocks are dropped (the same report after
    # the bare prompt): the unconditional branch of report guidance (`radllm generate reports
    # --cfg-scale`), which raises the findings the image supports above the normal template.
    report_drop_prob: float = 0.0
    max_views: int = 2  # image blocks per study at most (frontal views first)
    vqa_questions_per_study: int = 1  # VQA examples drawn per study (from its non-blank labels)
    # Report targets (report_generation). The image decides the impression; the findings prose is
    # mostly template text (negations, order, phrasing) that the previous words predict. These
    # options move the loss towards what the image decides (README "Training", curriculum).
    report_format: str = AS_WRITTEN  # as_written | impression_first (IMPRESSION: ... FINDINGS: ...)
    impression_weight: float = 1.0  # loss weight of the impression's tokens in report targets
    word_dropout: float = 0.0  # fraction of teacher-forced report input tokens replaced by random text tokens
    image_loss_weight: float = 1.0  # loss weight of the image tokens of image_generation targets
    # What image_generation prompts hold: the whole report, or only its impression (the positive
    # findings, without the negated ones that name every finding the image does not show); a
    # report without an IMPRESSION section stays whole. The export records it in config.json
    # (IMAGE_CONDITION_KEY), which `radllm generate images` follows unless --condition says otherwise.
    image_condition: str = FULL_REPORT  # report | impression
    # Loss weight of the image tokens that report-generation and VQA prompts show (0 = they are
    # context only). > 0 trains the image prior on every image-reading example at no extra
    # forward cost: cleaner samples from `generate images`, a better unconditional CFG branch.
    prompt_image_weight: float = 0.0

    def validate(self) -> "TaskMixConfig":
        """Raise `RadllmError` naming the first bad option; returns self for chaining."""
        if self.stage not in STAGES:  # same rule as check_stage, with the config key in the message
            raise RadllmError(f"tasks.stage = {self.stage!r}; expected one of {STAGES}")
        unknown = set(self.weights) - set(TASK_NAMES)
        if unknown:
            raise RadllmError(f"tasks.weights: unknown task(s) {sorted(unknown)}; expected names from {list(TASK_NAMES)}")
        negative = {name: w for name, w in self.weights.items() if w < 0}
        if negative:
            raise RadllmError(f"tasks.weights: negative weight(s) {negative}; weights must be >= 0")
        if sum(self.weights.values()) <= 0:
            raise RadllmError(f"tasks.weights = {dict(self.weights)}: at least one task needs a positive weight")
        for key in ("cfg_drop_prob", "report_drop_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise RadllmError(f"tasks.{key} = {value}; expected a probability in [0, 1]")
        if self.max_views < 1:
            raise RadllmError(f"tasks.max_views = {self.max_views}; expected at least 1")
        if self.vqa_questions_per_study < 1:
            raise RadllmError(f"tasks.vqa_questions_per_study = {self.vqa_questions_per_study}; expected at least 1")
        if self.report_format not in REPORT_FORMATS:
            raise RadllmError(f"tasks.report_format = {self.report_format!r}; expected one of {list(REPORT_FORMATS)}")
        if self.image_condition not in IMAGE_CONDITIONS:
            raise RadllmError(f"tasks.image_condition = {self.image_condition!r}; expected one of {list(IMAGE_CONDITIONS)}")
        for key in ("impression_weight", "image_loss_weight"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise RadllmError(f"tasks.{key} = {value}; expected a finite weight > 0")
        if not (math.isfinite(self.prompt_image_weight) and self.prompt_image_weight >= 0):
            raise RadllmError(f"tasks.prompt_image_weight = {self.prompt_image_weight}; expected a finite weight >= 0")
        if not 0.0 <= self.word_dropout < 1.0:
            raise RadllmError(f"tasks.word_dropout = {self.word_dropout}; expected a rate in [0, 1)")
        return self


def check_stage(stage: int) -> None:
    """Raise ValueError unless `stage` is 1 or 2 (prompt builders are called with a bare int)."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {STAGES}")
