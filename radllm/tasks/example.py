"""What every task builds on: the `TaskExample` it returns and the pieces its prompts are made of.

A `TaskExample` is one training sequence with its loss mask, the unit that packing consumes. Every
task turns a study into prompt tokens (no loss) followed by response tokens (loss). The label of
position 0 is always `IGNORE_INDEX`: nothing precedes the first token, and once examples are
packed back to back a trained first label would make the previous sample's last token learn to
predict the next sample's start, i.e. a loss term that crosses sample boundaries.

Sequence conventions (the same in both stages, for every task and for generation):
- every sequence starts with the *start token*: the tokenizer's bos, or its eos when it has no
  bos (Qwen-style tokenizers use their end-of-text token as the document separator);
- an image is ``<boi>``, its codes' ids in raster order, ``<eoi>`` (`radllm.vocab.image_token_ids`);
- every text piece (report, instruction, question, answer) is encoded on its own with
  `radllm.vocab.encode_report` (no specials; special-token strings stay plain text) and the
  pieces are concatenated, so a report's ids inside any prompt are exactly the shard's
  `report_ids`, and no text can ever produce a control or image id.

Randomness: task functions accept a `random.Random` or a `numpy.random.Generator` (`Rng`), so
callers (the trainer's data stream, a notebook, the generation code) can pass whatever they
already hold; `draw_unit`, `draw_index` and `draw_subset` are all the draws tasks need.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.manifest import is_frontal_view
from radllm.vocab import image_token_ids
from radllm.vocab_spec import VisualVocabSpec

#: Label value that `torch.nn.functional.cross_entropy` (and HF models) skip.
IGNORE_INDEX = -100

STAGES = (1, 2)

Rng = random.Random | np.random.Generator


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


def with_donor_images(study: TokenizedStudy, donor: TokenizedStudy) -> TokenizedStudy:
    """`study` showing `donor`'s views and image codes (its report, the target, stays its own)."""
    return replace(study, image_codes=list(donor.image_codes), views=list(donor.views))


def start_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """Id that opens every sequence: bos, else eos."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise RadllmError(f"tokenizer {type(tokenizer).__name__} has neither a bos nor an eos token; radllm needs one to delimit sequences")
    return int(token)


def end_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """Id that closes every text response (eos)."""
    if tokenizer.eos_token_id is None:
        raise RadllmError(f"tokenizer {type(tokenizer).__name__} has no eos token; radllm needs one to end reports and answers")
    return int(tokenizer.eos_token_id)


def image_block(codes: np.ndarray, spec: VisualVocabSpec, where: str = "image") -> list[int]:
    """`image_token_ids` with `where` (e.g. the study key and view) prefixed to its errors."""
    try:
        return image_token_ids(spec, codes)
    except RadllmError as err:
        raise RadllmError(f"{where}: {err}") from err


def image_blocks(image_codes: Sequence[np.ndarray], spec: VisualVocabSpec, where: str = "prompt") -> list[int]:
    """One image block per view, back to back."""
    ids: list[int] = []
    for index, codes in enumerate(image_codes):
        ids.extend(image_block(codes, spec, f"{where} view {index}"))
    return ids


def report_token_ids(report_ids: Sequence[int] | np.ndarray, spec: VisualVocabSpec, where: str = "report") -> list[int]:
    """Validated list of report ids: every id must be a text token of the base tokenizer.

    Raises:
        RadllmError: an id is negative or beyond the base text vocabulary (the shard was
            tokenized with another tokenizer).
    """
    ids = np.asarray(report_ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise RadllmError(f"{where}: report ids have dtype {ids.dtype}, expected integers")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= spec.text_vocab_size):
        raise RadllmError(f"{where}: report ids span {ids.min()}..{ids.max()}, outside the text vocabulary 0..{spec.text_vocab_size - 1}")
    return ids.tolist()


def checked_views(study: TokenizedStudy, spec: VisualVocabSpec) -> list[str]:
    """The study's view names, after checking there is one per code array and every grid fits.

    Every image task runs this before building prompts: checking here, with the study key in
    every message, lets a bad shard sample be named and skipped; the prompt builders themselves
    only know about code arrays.
    """
    if len(study.views) != len(study.image_codes):
        raise RadllmError(f"study {study.key}: {len(study.image_codes)} code arrays but {len(study.views)} view names")
    for index, codes in enumerate(study.image_codes):
        image_block(codes, spec, f"study {study.key} view {index}")
    return list(study.views)


def select_input_views(views: Sequence[str], max_views: int) -> list[int]:
    """Indices of the views given to the model as input (report generation, VQA).

    Frontal views come first (a report is written mainly from the frontal image), then the rest,
    each group in study order, capped at `max_views` so a 4-image study does not fill a row.
    """
    order = [i for i, v in enumerate(views) if is_frontal_view(v)] + [i for i, v in enumerate(views) if not is_frontal_view(v)]
    return order[:max_views]


def select_target_view(views: Sequence[str]) -> int:
    """Index of the view image generation learns to draw: the first frontal view, else view 0.

    Reports describe the frontal image; drawing a lateral from a report would teach a mostly
    arbitrary mapping.
    """
    for index, view in enumerate(views):
        if is_frontal_view(view):
            return index
    return 0


def draw_unit(rng: Rng) -> float:
    """Uniform float in [0, 1)."""
    return float(rng.random())


def draw_index(rng: Rng, n: int) -> int:
    """Uniform integer in [0, n)."""
    if n <= 0:
        raise ValueError(f"cannot draw an index from an empty range (n={n})")
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(n))
    return rng.randrange(n)


def draw_subset(rng: Rng, n: int, k: int) -> list[int]:
    """`min(k, n)` distinct indices from [0, n), in draw order."""
    k = min(k, n)
    if isinstance(rng, np.random.Generator):
        return [int(i) for i in rng.choice(n, size=k, replace=False)]
    return rng.sample(range(n), k)


def pick_template(bank: Sequence[str], template: int | Rng | None) -> str:
    """Entry of `bank` chosen by index, drawn with an rng, or the first one when None.

    Training and generation must build byte-identical prompts, so each task module's banks of
    instructions and questions are the single source: the trainer draws a phrasing per example
    with its rng, generation passes an index (0 by default). Reordering or editing an entry
    changes what a trained model expects: append new phrasings at the end instead.
    """
    if template is None:
        return bank[0]
    if isinstance(template, (random.Random, np.random.Generator)):
        return bank[draw_index(template, len(bank))]
    index = operator.index(template)
    if not 0 <= index < len(bank):
        raise ValueError(f"template index {index} out of range (this bank has {len(bank)} phrasings)")
    return bank[index]


def check_stage(stage: int) -> None:
    """Raise ValueError unless `stage` is 1 or 2 (prompt builders are called with a bare int)."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {STAGES}")
