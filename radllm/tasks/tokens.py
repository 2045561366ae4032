"""Token-level building blocks shared by every task and by generation.

Sequence conventions (the same in both stages):
- every sequence starts with the *start token*: the tokenizer's bos, or its eos when it has no
  bos (Qwen-style tokenizers use their end-of-text token as the document separator);
- an image is ``<boi>``, its codes' ids in raster order, ``<eoi>`` (`radllm.vocab.image_token_ids`);
- every text piece (report, instruction, question, answer) is encoded on its own with
  `radllm.vocab.encode_report` (no specials; special-token strings stay plain text) and the
  pieces are concatenated, so a report's ids inside any prompt are exactly the shard's
  `report_ids`, and no text can ever produce a control or image id.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.errors import RadllmError
from radllm.vocab import image_token_ids
from radllm.vocab_spec import VisualVocabSpec


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
