"""`TaskExample`: one training sequence with its loss mask, the unit that packing consumes.

Every task turns a study into prompt tokens (no loss) followed by response tokens (loss). The
label of position 0 is always `IGNORE_INDEX`: nothing precedes the first token, and once examples
are packed back to back a trained first label would make the previous sample's last token learn
to predict the next sample's start, i.e. a loss term that crosses sample boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Label value that `torch.nn.functional.cross_entropy` (and HF models) skip.
IGNORE_INDEX = -100


@dataclass
class TaskExample:
    """A token sequence and its per-token targets (`IGNORE_INDEX` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]  # same length as input_ids; labels[i] is the target *at* position i (unshifted)
    task: str
    key: str  # study key the example was built from

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"example {self.key!r} ({self.task}): {len(self.input_ids)} input ids but {len(self.labels)} labels")
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


def prompt_response_example(prompt: Sequence[int], response: Sequence[int], task: str, key: str) -> TaskExample:
    """Concatenate prompt and response; only response tokens are targets."""
    if not prompt:
        raise ValueError(f"example {key!r} ({task}): the prompt must hold at least the start token")
    ids = [int(t) for t in prompt] + [int(t) for t in response]
    labels = [IGNORE_INDEX] * len(prompt) + [int(t) for t in response]
    return TaskExample(input_ids=ids, labels=labels, task=task, key=key)
