"""Append the visual vocabulary (`<boi>`, `<eoi>`, `<img_0>` … `<img_{K-1}>`) to a text tokenizer.

Id layout of an extended tokenizer (T = size of the base tokenizer, K = VQ codebook size):

    0 … T-1            the base tokenizer, untouched (text_vocab_size = T)
    T                  <pad>, only when the base has no pad token (see below)
    next two           <boi>, <eoi>
    next K             <img_0> … <img_{K-1}>   (token_offset = id of <img_0>; contiguous)
    … vocab_size-1     unused embedding rows: the model's vocabulary is padded to a multiple of
                       64 for matmul efficiency. No tokens are created for them, so the tokenizer
                       can never emit those ids; generation must mask logits >= len(tokenizer).

Choices worth knowing:
- The new tokens are *special* added tokens (``special=True, normalized=False``, no strip): the
  text "<img_12>" maps to exactly one id, they are never split or normalised by the text pipeline,
  and `skip_special_tokens=True` drops them when decoding. Report text must never produce them
  by accident, so `radllm.vocab.codec.encode_report` encodes reports with special tokens split
  into ordinary pieces: a report that literally contains "<img_5>" stays text.
- Padding: batching needs a pad token. A base without one gets a dedicated `<pad>` special token
  rather than reusing eos, so any mask derived from ``ids == pad_token_id`` can never hide a real
  end-of-sequence token (with pad = eos the model would never learn to stop). Its row costs
  nothing, the vocabulary is padded anyway. A base that already has a pad token keeps it.
- A base tokenizer that already contains any of the new token strings is refused: reusing its
  ids would break the contiguous layout above (build from the original text tokenizer instead).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase

from radllm.atomic import atomic_directory
from radllm.errors import RadllmError
from radllm.vocab.load import load_hf_tokenizer, verify_tokenizer, vq_spec_fields
from radllm.vocab_spec import BOI_TOKEN, EOI_TOKEN, VisualVocabSpec, image_token, save_spec, sha256_files

log = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
DEFAULT_PAD_MULTIPLE = 64

# Files that define a Hugging Face tokenizer (a base dir may be a whole model dir: weights are not
# part of the tokenizer's identity and would make hashing slow).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


def padded_vocab_size(num_tokens: int, multiple: int = DEFAULT_PAD_MULTIPLE) -> int:
    """Smallest multiple of `multiple` that is >= `num_tokens` (embedding rows of the model)."""
    if multiple < 1:
        raise RadllmError(f"vocabulary pad multiple must be >= 1, got {multiple}")
    return -(-num_tokens // multiple) * multiple


def tokenizer_files_hash(directory: str | os.PathLike) -> str:
    """sha256 over the tokenizer files present in `directory` (provenance of the base tokenizer)."""
    directory = Path(directory)
    files = [directory / name for name in TOKENIZER_FILES if (directory / name).is_file()]
    if not files:
        raise RadllmError(f"{directory}: no tokenizer files found (expected one of {', '.join(TOKENIZER_FILES[:5])}, ...)")
    return sha256_files(files)


def check_output_dir(out_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to replace an existing tokenizer directory unless asked: shards and models refer to it."""
    if Path(out_dir).exists() and not overwrite:
        raise RadllmError(f"output directory {out_dir} already exists (pass overwrite / --overwrite to replace it)")


def extend_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    *,
    codebook_size: int,
    grid_height: int,
    grid_width: int,
    image_size: int,
    vq_hash: str,
    tokenizer_hash: str,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> VisualVocabSpec:
    """Add pad (if missing), `<boi>`, `<eoi>` and K image tokens to `tokenizer` in place.

    Returns:
        The spec describing the new ids; `vocab_size` is the padded number of embedding rows.

    Raises:
        RadllmError: if the tokenizer already holds one of the new token strings.
    """
    if codebook_size < 1:
        raise RadllmError(f"codebook size must be >= 1, got {codebook_size}")
    text_vocab_size = len(tokenizer)
    new_tokens = [BOI_TOKEN, EOI_TOKEN] + [image_token(k) for k in range(codebook_size)]
    vocab = tokenizer.get_vocab()
    clashes = [tok for tok in new_tokens if tok in vocab]
    if clashes:
        raise RadllmError(
            f"base tokenizer {tokenizer.name_or_path!r} already contains {clashes[:3]} (id {vocab[clashes[0]]}); "
            "build from the original text tokenizer, not an already extended one"
        )
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": AddedToken(PAD_TOKEN, special=True, normalized=False)})

    boi_id = len(tokenizer)
    added = tokenizer.add_tokens(
        [AddedToken(tok, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False) for tok in new_tokens],
        special_tokens=True,
    )
    if added != len(new_tokens) or len(tokenizer) != boi_id + len(new_tokens):
        raise RuntimeError(f"expected {len(new_tokens)} new ids after {boi_id}, the tokenizer added {added}")

    return VisualVocabSpec(
        codebook_size=codebook_size,
        grid_height=grid_height,
        grid_width=grid_width,
        image_size=image_size,
        token_offset=boi_id + 2,
        boi_id=boi_id,
        eoi_id=boi_id + 1,
        text_vocab_size=text_vocab_size,
        vocab_size=padded_vocab_size(len(tokenizer), pad_multiple),
        pad_multiple=pad_multiple,
        vq_hash=vq_hash,
        tokenizer_hash=tokenizer_hash,
    )


def save_tokenizer_dir(
    tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, out_dir: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write the HF tokenizer files plus `radllm.json` into `out_dir` as one atomic directory swap."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    verify_tokenizer(tokenizer, spec, str(out_dir))
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        tokenizer.save_pretrained(tmp)
        save_spec(spec, tmp)
    return out_dir


def build_tokenizer(
    base_dir: str | os.PathLike,
    vq_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
    overwrite: bool = False,
) -> VisualVocabSpec:
    """Extend the tokenizer in `base_dir` with the codebook of the VQ-GAN in `vq_dir`; save to `out_dir`.

    The spec records the VQ weights hash and the base tokenizer files hash, so shards and models
    built from this directory can later be checked against the artifacts they came from.
    """
    check_output_dir(out_dir, overwrite)
    vq_fields = vq_spec_fields(vq_dir)
    tokenizer = load_hf_tokenizer(base_dir)
    spec = extend_tokenizer(tokenizer, **vq_fields, tokenizer_hash=tokenizer_files_hash(base_dir), pad_multiple=pad_multiple)
    save_tokenizer_dir(tokenizer, spec, out_dir, overwrite=overwrite)
    log.info(
        "wrote %s: %d text tokens + %d visual tokens (<img_*> at %d..%d), %d embedding rows",
        out_dir, spec.text_vocab_size, spec.codebook_size, spec.token_offset,
        spec.token_offset + spec.codebook_size - 1, spec.vocab_size,
    )
    return spec
