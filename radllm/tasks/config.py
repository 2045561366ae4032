"""`TaskMixConfig`: which tasks a training stage draws and their options (the run config's `tasks:`).

    tasks:
      stage: 2
      weights: {report_generation: 1.0, image_generation: 1.0, vqa: 0.5, text_lm: 0.0}
      cfg_drop_prob: 0.1

Weights are relative (they need not sum to 1); a weight of 0 switches a task off. YAML keys are
merged into the defaults, so a task left out keeps its default weight (`TaskSpec.default_weight`).
`validate` checks what all tasks share here and asks each registered task to check its own
options (`TaskSpec.validate_options`), so this module knows no task by name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from radllm.errors import RadllmError
from radllm.tasks.example import STAGES
from radllm.tasks.registry import task_names, task_specs


def _default_weights() -> dict[str, float]:
    return {spec.name: spec.default_weight for spec in task_specs()}


@dataclass
class JointStage:
    """One stage's share of a joint run (`tasks.joint`): its prompts (`stage`) and task weights."""

    stage: int = 1
    share: float = 1.0  # relative: the fraction of studies drawn with this stage's mix
    weights: dict[str, float] = field(default_factory=_default_weights)


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
    report_format: str = "as_written"  # as_written | impression_first (IMPRESSION: ... FINDINGS: ...)
    impression_weight: float = 1.0  # loss weight of the impression's tokens in report targets
    # Loss weight of the report sentences that affirm a finding (the rule labeler reads a positive or
    # uncertain observation in them), times the section's weight: the sentences that carry what the
    # image shows, over the stock negatives every report repeats.
    finding_weight: float = 1.0
    # Order of the findings section's sentences in report targets: as written, or those that affirm
    # a finding first (in their written order), then the rest: the findings open with what the
    # impression concludes, so writing them is reading the decided findings back, then the negatives.
    findings_order: str = "as_written"  # as_written | affirmed_first
    word_dropout: float = 0.0  # fraction of teacher-forced report input tokens replaced by random text tokens
    image_loss_weight: float = 1.0  # loss weight of the image tokens of image_generation targets
    # What image_generation prompts hold: the whole report, or only its impression (the positive
    # findings, without the negated ones that name every finding the image does not show); a
    # report without an IMPRESSION section stays whole. The export records it in config.json
    # (IMAGE_CONDITION_KEY), which `radllm generate images` follows unless --condition says otherwise.
    image_condition: str = "report"  # report | impression
    # Loss weight of the image tokens that report-generation and VQA prompts show (0 = they are
    # context only). > 0 trains the image prior on every image-reading example at no extra
    # forward cost: cleaner samples from `generate images`, a better unconditional CFG branch.
    prompt_image_weight: float = 0.0
    # A joint run (the ablation of the two-stage fine-tune): each study first draws one entry by
    # share, then its task by that entry's weights, and is prompted as that entry's stage; the
    # other options are shared. Empty: the stage's own mix (`stage`, `weights`). E.g. the union of
    # the demo's stages in the ratio of their steps: [{stage: 1, share: 600, weights: ...},
    # {stage: 2, share: 80, weights: ...}].
    joint: list[JointStage] = field(default_factory=list)

    def stage_mixes(self) -> list[tuple[float, "TaskMixConfig"]]:
        """(share, the mix of one stage) per `joint` entry; [(1.0, self)] without `joint`."""
        if not self.joint:
            return [(1.0, self)]
        return [(entry.share, dataclasses.replace(self, stage=entry.stage, weights=dict(entry.weights), joint=[])) for entry in self.joint]

    def validate(self) -> "TaskMixConfig":
        """Raise `RadllmError` naming the first bad option; returns self for chaining."""
        for index, entry in enumerate(self.joint):
            if not (math.isfinite(entry.share) and entry.share > 0):
                raise RadllmError(f"tasks.joint[{index}].share = {entry.share}; expected a finite share > 0")
            try:
                self.stage_mixes()[index][1].validate()
            except RadllmError as err:
                raise RadllmError(f"tasks.joint[{index}]: {err}") from err
        if self.stage not in STAGES:  # same rule as check_stage, with the config key in the message
            raise RadllmError(f"tasks.stage = {self.stage!r}; expected one of {STAGES}")
        names = task_names()
        unknown = set(self.weights) - set(names)
        if unknown:
            raise RadllmError(f"tasks.weights: unknown task(s) {sorted(unknown)}; expected names from {list(names)}")
        negative = {name: w for name, w in self.weights.items() if w < 0}
        if negative:
            raise RadllmError(f"tasks.weights: negative weight(s) {negative}; weights must be >= 0")
        if sum(self.weights.values()) <= 0:
            raise RadllmError(f"tasks.weights = {dict(self.weights)}: at least one task needs a positive weight")
        if self.max_views < 1:
            raise RadllmError(f"tasks.max_views = {self.max_views}; expected at least 1")
        if not (math.isfinite(self.prompt_image_weight) and self.prompt_image_weight >= 0):
            raise RadllmError(f"tasks.prompt_image_weight = {self.prompt_image_weight}; expected a finite weight >= 0")
        for spec in task_specs():
            if spec.validate_options is not None:
                spec.validate_options(self)
        return self


def check_choice(config: TaskMixConfig, key: str, choices: tuple[str, ...]) -> None:
    """`tasks.<key>` must be one of `choices`."""
    value = getattr(config, key)
    if value not in choices:
        raise RadllmError(f"tasks.{key} = {value!r}; expected one of {list(choices)}")


def check_probability(config: TaskMixConfig, key: str) -> None:
    """`tasks.<key>` must be a probability in [0, 1]."""
    value = getattr(config, key)
    if not 0.0 <= value <= 1.0:
        raise RadllmError(f"tasks.{key} = {value}; expected a probability in [0, 1]")


def check_loss_weight(config: TaskMixConfig, key: str) -> None:
    """`tasks.<key>` must be a finite loss weight > 0."""
    value = getattr(config, key)
    if not (math.isfinite(value) and value > 0):
        raise RadllmError(f"tasks.{key} = {value}; expected a finite weight > 0")
