"""Report text and VQ code grids to token ids and back: the only place these conversions live.

Shard writers, task builders and generators all go through these functions, so a report is
tokenized the same way everywhere and image codes always sit in raster order between `<boi>` and
`<eoi>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.errors import RadllmError
from radllm.vocab_spec import VisualVocabSpec


def encode_report(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of report `text` without bos/eos, with special-token strings kept as plain text.

    Splitting special tokens means a report that literally contains "<img_5>" or "</s>" yields
    ordinary text pieces, never an image or control id, so report text cannot inject structure.
    """
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


def decode_report(tokenizer: PreTrainedTokenizerBase, ids: Iterable[int]) -> str:
    """Inverse of `encode_report`; special tokens (eos, pad, visual) are dropped, spacing kept as is."""
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True, clean_up_tokenization_spaces=False)


def image_token_ids(spec: VisualVocabSpec, codes: np.ndarray | Sequence[int]) -> list[int]:
    """`<boi>`, the image's code ids in raster order (row by row), `<eoi>`.

    Args:
        codes: integer VQ codes, shape [grid_height, grid_width] or flat with H*W entries.

    Raises:
        RadllmError: if the grid shape or a code does not fit the spec (codes from another VQ-GAN).
    """
    grid = np.asarray(codes)
    expected = (spec.grid_height, spec.grid_width)
    if (grid.ndim == 2 and grid.shape != expected) or grid.size != spec.tokens_per_image:
        raise RadllmError(f"image codes of shape {grid.shape} do not fit the {expected[0]}x{expected[1]} grid of the visual vocab")
    if not np.issubdtype(grid.dtype, np.integer):
        raise RadllmError(f"image codes must be integers, got dtype {grid.dtype}")
    flat = grid.reshape(-1).astype(np.int64)  # [H*W]
    bad = (flat < 0) | (flat >= spec.codebook_size)
    if bad.any():
        raise RadllmError(f"image code {int(flat[bad][0])} is outside the codebook (0..{spec.codebook_size - 1})")
    return [spec.boi_id, *(flat + spec.token_offset).tolist(), spec.eoi_id]


def image_codes_from_ids(spec: VisualVocabSpec, ids: Sequence[int]) -> np.ndarray:
    """Inverse of `image_token_ids`: codes [grid_height, grid_width] from `<boi>` … `<eoi>` ids.

    Raises:
        RadllmError: if the ids are not exactly `<boi>`, H*W image ids, `<eoi>`.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    n = spec.tokens_per_image
    if ids.size != n + 2 or ids[0] != spec.boi_id or ids[-1] != spec.eoi_id:
        raise RadllmError(f"expected <boi>, {n} image tokens, <eoi> ({n + 2} ids), got {ids.size} ids starting {ids[:3].tolist()}")
    codes = ids[1:-1] - spec.token_offset
    if ((codes < 0) | (codes >= spec.codebook_size)).any():
        raise RadllmError(f"non-image token id between <boi> and <eoi>: {int(ids[1:-1][(codes < 0) | (codes >= spec.codebook_size)][0])}")
    return codes.reshape(spec.grid_height, spec.grid_width)  # [H, W]
