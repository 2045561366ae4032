"""The task mix: which tasks a training stage draws (`TaskMixConfig`), the registry of tasks, and a
deterministic stream of training examples from a stream of studies (`TaskMixer`).

`TaskMixConfig` is part of the trainer's run config (loaded through `radllm.config.load_config`), e.g.

    tasks:
      stage: 2
      weights: {report_generation: 1.0, image_generation: 1.0, vqa: 0.5, text_lm: 0.0}
      cfg_drop_prob: 0.1

Weights are relative (they need not sum to 1); a weight of 0 switches a task off. YAML keys are
merged into the defaults, so a task left out keeps its default weight.

Each study gets its own rng seeded from (seed, epoch, study key), so the examples a study yields
do not depend on where it falls in the stream, on the number of ranks or workers, or on a resume
in the middle of an epoch; a new epoch draws new tasks, phrasings and CFG drops.

Per study one task is drawn with probability proportional to its weight. A task that has nothing
to say about the study (no image, empty report, all labels blank) is removed and the draw is
repeated among the rest, so a study yields examples whenever any enabled task applies.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.tasks.example import STAGES, Rng, TaskExample, with_prompt_image_targets
from radllm.tasks.image_generation import FULL_REPORT, IMAGE_CONDITIONS, IMAGE_GENERATION, image_generation
from radllm.tasks.report_generation import AS_WRITTEN, REPORT_FORMATS, REPORT_GENERATION, report_generation
from radllm.tasks.text_lm import TEXT_LM, text_lm
from radllm.tasks.vqa import VQA, vqa
from radllm.vocab_spec import VisualVocabSpec

logger = logging.getLogger(__name__)

Task = Callable[[TokenizedStudy, PreTrainedTokenizerBase, VisualVocabSpec, Rng, "TaskMixConfig"], list[TaskExample]]

#: Task name → pure function (study, tokenizer, spec, rng, config) → examples. Each name is
#: declared by its task's module. The order (that of `TASK_NAMES`) is part of every draw
#: (`TaskMixer.study_examples`): append a new task, never reorder.
TASKS: dict[str, Task] = {
    REPORT_GENERATION: report_generation,
    IMAGE_GENERATION: image_generation,
    VQA: vqa,
    TEXT_LM: text_lm,
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)

#: Tasks whose prompts show image blocks (`tasks.prompt_image_weight` makes their codes targets).
IMAGE_READING_TASKS = (REPORT_GENERATION, VQA)

#: Tasks a run config draws unless its `tasks.weights` say otherwise; every other task is off.
_DEFAULT_TASKS = (REPORT_GENERATION, IMAGE_GENERATION)

#: Counter keys besides task names.
SKIPPED_INVALID = "skipped_invalid"  # the study raised RadllmError (bad codes, ids or labels)
NO_APPLICABLE_TASK = "no_applicable_task"  # no enabled task could use the study

_WARN_LIMIT = 10


def _default_weights() -> dict[str, float]:
    return {name: 1.0 if name in _DEFAULT_TASKS else 0.0 for name in TASK_NAMES}


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


def study_rng(seed: int, epoch: int, key: str) -> random.Random:
    """The rng of one study in one epoch (string seeding hashes with sha512: stable across runs)."""
    return random.Random(f"radllm.tasks/{seed}/{epoch}/{key}")


class TaskMixer:
    """Turns studies into examples according to a `TaskMixConfig`.

    `counts` tallies examples per task plus `SKIPPED_INVALID` and `NO_APPLICABLE_TASK` studies,
    for the trainer to log.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, config: TaskMixConfig, seed: int) -> None:
        self.tokenizer = tokenizer
        self.spec = spec
        self.config = config.validate()
        self.seed = seed
        self.counts: Counter[str] = Counter()

    def study_examples(self, study: TokenizedStudy, epoch: int = 0) -> list[TaskExample]:
        """Examples of one study in one epoch (a pure function of seed, epoch and the study).

        Raises:
            RadllmError: the study's codes, ids or labels do not fit the vocabulary.
        """
        rng = study_rng(self.seed, epoch, study.key)
        candidates = {name: w for name, w in self.config.weights.items() if w > 0}
        while candidates:
            names = sorted(candidates, key=TASK_NAMES.index)  # fixed order: draws do not depend on dict order
            name = rng.choices(names, weights=[candidates[n] for n in names])[0]
            examples = TASKS[name](study, self.tokenizer, self.spec, rng, self.config)
            if examples:
                if name in IMAGE_READING_TASKS and self.config.prompt_image_weight > 0:
                    examples = [with_prompt_image_targets(e, self.spec, self.config.prompt_image_weight) for e in examples]
                return examples
            del candidates[name]
        return []

    def examples(self, studies: Iterable[TokenizedStudy], epoch: int = 0) -> Iterator[TaskExample]:
        """Stream examples; invalid studies are skipped, counted and logged (first few)."""
        for study in studies:
            try:
                examples = self.study_examples(study, epoch)
            except RadllmError as err:
                self.counts[SKIPPED_INVALID] += 1
                if self.counts[SKIPPED_INVALID] <= _WARN_LIMIT:
                    logger.warning("skipping study %s: %s", study.key, err)
                continue
            if not examples:
                self.counts[NO_APPLICABLE_TASK] += 1
            for example in examples:
                self.counts[example.task] += 1
                yield example
