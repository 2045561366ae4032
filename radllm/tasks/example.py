"""`TaskExample`: one training sequence with its loss mask, the unit that packing consumes.

Every task turns a study into prompt tokens (no loss) followed by response tokens (loss). The
label of position 0 is always `IGNORE_INDEX`: nothing precedes the first token, and once examples
are packed back to back a trained first label would make the previous sample's last token learn
to predict the next sample's start, i.e. a loss term that crosses sample boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, replace

from radllm.tasks.randomness import Rng, draw_index, draw_unit
from radllm.vocab_spec import VisualVocabSpec

#: Label value that `torch.nn.functional.cross_entropy` (and HF models) skip.
IGNORE_INDEX = -100


@dataclass
class TaskExample:
    """A token sequence and its per-token targets (`IGNORE_INDEX` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]  # same length as input_ids; labels[i] is the target *at* position i (unshifted)
    task: str
    key: str  # study key the example was built from
    # loss weight of each position (same length; only target positions matter); None = all 1.0
    weights: list[float] | None = None

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"example {self.key!r} ({self.task}): {len(self.input_ids)} input ids but {len(self.labels)} labels")
        if self.weights is not None and len(self.weights) != len(self.labels):
            raise ValueError(f"example {self.key!r} ({self.task}): {len(self.weights)} loss weights but {len(self.labels)} labels")
        if not self.input_ids:
            raise ValueError(f"example {self.key!r} ({self.task}) is empty")
        if self.labels[0] != IGNORE_INDEX:
            raise ValueError(
                f"example {self.key!r} ({self.task}): the first label must be {IGNORE_INDEX} "
                "(it has no preceding token and would leak loss across packed samples)"
            )

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        """Number of tokens that carry loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def prompt_response_example(
    prompt: Sequence[int], response: Sequence[int], task: str, key: str, response_weights: Sequence[float] | float | None = None
) -> TaskExample:
    """Concatenate prompt and response; only response tokens are targets.

    `response_weights`: the loss weight of every response token (one number for all, or one
    per token); None or an all-1.0 weighting stores no weights (the plain mean loss).
    """
    if not prompt:
        raise ValueError(f"example {key!r} ({task}): the prompt must hold at least the start token")
    ids = [int(t) for t in prompt] + [int(t) for t in response]
    labels = [IGNORE_INDEX] * len(prompt) + [int(t) for t in response]
    if isinstance(response_weights, (int, float)):
        response_weights = [float(response_weights)] * len(response)
    weights = None
    if response_weights is not None and any(w != 1.0 for w in response_weights):
        if len(response_weights) != len(response):
            raise ValueError(f"example {key!r} ({task}): {len(response_weights)} response weights for {len(response)} response tokens")
        weights = [0.0] * len(prompt) + [float(w) for w in response_weights]
    return TaskExample(input_ids=ids, labels=labels, task=task, key=key, weights=weights)


def with_prompt_image_targets(example: TaskExample, spec: VisualVocabSpec, weight: float) -> TaskExample:
    """`example` with the image tokens of its prompt made targets of loss weight `weight`: the
    image prior learnt from an image-reading example. Targets are the codes and the ``<eoi>`` that
    closes them; ``<boi>`` only opens a block, and the ``<eoi>`` of an empty block (the dropped
    image of `report_drop_prob`) is left out, since drawn images never end there. Existing targets
    keep their weights."""
    ids = example.input_ids
    labels, weights = list(example.labels), list(example.weights or [1.0] * len(example))
    for position in range(1, len(example)):
        token = ids[position]
        closes_codes = token == spec.eoi_id and spec.is_image_id(ids[position - 1])
        if labels[position] == IGNORE_INDEX and (spec.is_image_id(token) or closes_codes):
            labels[position], weights[position] = token, weight
    return replace(example, labels=labels, weights=weights)


def drop_words(example: TaskExample, first: int, rate: float, rng: Rng, vocab_size: int, excluded: Set[int]) -> TaskExample:
    """Word dropout on teacher-forced inputs: each input id at positions >= `first` is replaced,
    with probability `rate`, by a uniform id of [0, vocab_size) outside `excluded` (special
    tokens); labels stay the true tokens.

    With part of its own previous words corrupted, the model cannot predict a report from the
    report's beginning alone and has to take more of each next word from the image. The last
    position is never replaced (its input predicts nothing inside the example).
    """
    if rate <= 0:
        return example
    ids = list(example.input_ids)
    for position in range(first, len(ids) - 1):
        if draw_unit(rng) < rate:
            replacement = draw_index(rng, vocab_size)
            while replacement in excluded:
                replacement = draw_index(rng, vocab_size)
            ids[position] = replacement
    return TaskExample(input_ids=ids, labels=example.labels, task=example.task, key=example.key, weights=example.weights)
