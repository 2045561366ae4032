"""The task mix: a deterministic stream of training examples from a stream of studies.

Each study gets its own rng seeded from (seed, epoch, study key), so the examples a study yields
do not depend on where it falls in the stream, on the number of ranks or workers, or on a resume
in the middle of an epoch; a new epoch draws new tasks, phrasings and CFG drops.

Per study one task is drawn with probability proportional to its weight. A task that has nothing
to say about the study (no image, empty report, all labels blank) is removed and the draw is
repeated among the rest, so a study yields examples whenever any enabled task applies.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.tasks.config import IMAGE_GENERATION, REPORT_GENERATION, TASK_NAMES, TEXT_LM, VQA, TaskMixConfig
from radllm.tasks.example import TaskExample, with_prompt_image_targets
from radllm.tasks.image_generation import image_generation
from radllm.tasks.randomness import Rng
from radllm.tasks.report_generation import report_generation
from radllm.tasks.text_lm import text_lm
from radllm.tasks.vqa import vqa
from radllm.vocab_spec import VisualVocabSpec

logger = logging.getLogger(__name__)

Task = Callable[[TokenizedStudy, PreTrainedTokenizerBase, VisualVocabSpec, Rng, TaskMixConfig], list[TaskExample]]

#: Task name → pure function (study, tokenizer, spec, rng, config) → examples.
TASKS: dict[str, Task] = {
    REPORT_GENERATION: report_generation,
    IMAGE_GENERATION: image_generation,
    VQA: vqa,
    TEXT_LM: text_lm,
}

#: Tasks whose prompts show image blocks (`tasks.prompt_image_weight` makes their codes targets).
IMAGE_READING_TASKS = (REPORT_GENERATION, VQA)

#: Counter keys besides task names.
SKIPPED_INVALID = "skipped_invalid"  # the study raised RadllmError (bad codes, ids or labels)
NO_APPLICABLE_TASK = "no_applicable_task"  # no enabled task could use the study

_WARN_LIMIT = 10


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
