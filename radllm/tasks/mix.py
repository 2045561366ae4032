"""The task mix: a deterministic stream of training examples from a stream of studies (`TaskMixer`).

Each study gets its own rng seeded from (seed, epoch, study key), so the examples a study yields
do not depend on where it falls in the stream, on the number of ranks or workers, or on a resume
in the middle of an epoch; a new epoch draws new tasks, phrasings and CFG drops.

Per study one task is drawn with probability proportional to its weight (`TaskMixConfig.weights`)
among the registered tasks (`radllm.tasks.registry`). A task that has nothing to say about the
study (no image, empty report, all labels blank) is removed and the draw is repeated among the
rest, so a study yields examples whenever any enabled task applies.

A joint mix (`TaskMixConfig.joint`) first draws the study's stage by share with an rng of its own,
then builds exactly the examples that stage's mixer would build for the study: the joint run's
examples are the stage runs' examples, in the ratio of the shares.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator

from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.tasks.config import TaskMixConfig
from radllm.tasks.example import TaskExample, with_prompt_image_targets
from radllm.tasks.registry import task_names, task_spec
from radllm.vocab_spec import VisualVocabSpec

logger = logging.getLogger(__name__)

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
        self.mixes = config.stage_mixes()

    def study_mix(self, study: TokenizedStudy, epoch: int = 0) -> TaskMixConfig:
        """The mix `study` is drawn from in `epoch`: the config itself, or one joint entry's by share."""
        if len(self.mixes) == 1:
            return self.mixes[0][1]
        rng = study_rng(self.seed, epoch, f"{study.key}/joint")  # its own rng: the stage's draws stay the stage run's
        return rng.choices([mix for _, mix in self.mixes], weights=[share for share, _ in self.mixes])[0]

    def study_examples(self, study: TokenizedStudy, epoch: int = 0) -> list[TaskExample]:
        """Examples of one study in one epoch (a pure function of seed, epoch and the study).

        Raises:
            RadllmError: the study's codes, ids or labels do not fit the vocabulary.
        """
        config = self.study_mix(study, epoch)
        rng = study_rng(self.seed, epoch, study.key)
        candidates = {name: w for name, w in config.weights.items() if w > 0}
        order = task_names()  # position order: draws do not depend on dict order
        while candidates:
            names = sorted(candidates, key=order.index)
            name = rng.choices(names, weights=[candidates[n] for n in names])[0]
            task = task_spec(name)
            examples = task.build(study, self.tokenizer, self.spec, rng, config)
            if examples:
                if task.reads_images and config.prompt_image_weight > 0:
                    examples = [with_prompt_image_targets(e, self.spec, config.prompt_image_weight) for e in examples]
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
