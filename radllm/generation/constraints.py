"""Which token ids a decoder may emit: reports only text, images only image codes.

The model's output layer covers the whole padded vocabulary (text, control, `<boi>`/`<eoi>`,
image codes and unused padding rows). A report that emitted an image token, or an image that
emitted a word, would be garbage downstream, so decoding masks the logits to the allowed set
instead of hoping the model behaves.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from radllm.tasks import end_id
from radllm.vocab_spec import VisualVocabSpec


def report_token_mask(tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, vocab_size: int) -> Tensor:
    """Bool [vocab_size]: True for ids a report may contain, plus eos (which ends it).

    Allowed: ids of the base text tokenizer (below `spec.text_vocab_size`) except its special
    tokens (bos, pad, unk, ...): report text is encoded without specials, so a trained model
    never needs them. Never allowed: `<boi>`, `<eoi>`, image codes, tokens added after the base
    (e.g. `<pad>`) and the unused padding rows.
    """
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[: spec.text_vocab_size] = True
    specials = [i for i in tokenizer.all_special_ids if i is not None and 0 <= i < vocab_size]
    mask[specials] = False
    mask[end_id(tokenizer)] = True
    return mask


def image_token_mask(spec: VisualVocabSpec, vocab_size: int) -> Tensor:
    """Bool [vocab_size]: True exactly for the K image-code ids."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[spec.token_offset : spec.token_offset + spec.codebook_size] = True
    return mask


def disallowed_ids(mask: Tensor) -> list[int]:
    """Ids where `mask` is False (e.g. for `transformers`' `suppress_tokens`)."""
    return torch.nonzero(~mask).flatten().tolist()
