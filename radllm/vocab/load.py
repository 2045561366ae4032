"""Load an extended tokenizer directory and prove it agrees with its visual vocab spec.

A tokenizer directory is two files that must agree: the HF tokenizer (which id each token string
has) and `radllm.json` (which ids the model treats as image codes). If they drift apart (an edited
spec, a spec copied from a build against another VQ-GAN) every image token would silently shift,
so loading checks every `<img_k>` id and fails with the file and field that disagree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from radllm.errors import RadllmError
from radllm.vocab_spec import BOI_TOKEN, EOI_TOKEN, SPEC_FILENAME, VisualVocabSpec, image_token, load_spec
from radllm.vq.checkpoint import tokenizer_geometry, vq_weights_hash


def load_hf_tokenizer(directory: str | os.PathLike) -> PreTrainedTokenizerBase:
    """Load a local Hugging Face tokenizer directory with `AutoTokenizer` (no hub, no remote code)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RadllmError(f"tokenizer directory {directory} does not exist")
    try:
        return AutoTokenizer.from_pretrained(directory, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise RadllmError(f"{directory}: cannot load a Hugging Face tokenizer from it: {err}") from err


def load_tokenizer(tok_dir: str | os.PathLike) -> tuple[PreTrainedTokenizerBase, VisualVocabSpec]:
    """Load the tokenizer and spec written by `radllm build-tokenizer` and check they agree.

    Raises:
        RadllmError: naming `radllm.json` and the field that disagrees with the tokenizer files.
    """
    tok_dir = Path(tok_dir)
    spec = load_spec(tok_dir)
    tokenizer = load_hf_tokenizer(tok_dir)
    verify_tokenizer(tokenizer, spec, str(tok_dir / SPEC_FILENAME))
    return tokenizer, spec


def verify_tokenizer(tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, where: str) -> None:
    """Raise `RadllmError` unless `tokenizer` has exactly the visual ids that `spec` (from `where`) claims."""
    vocab = tokenizer.get_vocab()
    source = f"the tokenizer files in {tokenizer.name_or_path}" if tokenizer.name_or_path else "the tokenizer"
    problems = []
    for field, token, expected in (("boi_id", BOI_TOKEN, spec.boi_id), ("eoi_id", EOI_TOKEN, spec.eoi_id)):
        if vocab.get(token) != expected:
            problems.append(f"{field} = {expected}, but {source} map {token} to {vocab.get(token, 'nothing')}")
    for code in range(spec.codebook_size):
        actual = vocab.get(image_token(code))
        if actual != spec.token_offset + code:
            field = "codebook_size" if actual is None else "token_offset"
            problems.append(
                f"{field} = {getattr(spec, field)}, but {source} map {image_token(code)} to "
                f"{'nothing' if actual is None else actual} (expected {spec.token_offset + code})"
            )
            break
    extra = image_token(spec.codebook_size)
    if extra in vocab:
        problems.append(f"codebook_size = {spec.codebook_size}, but {source} also contain {extra} (id {vocab[extra]})")
    if len(tokenizer) > spec.vocab_size:
        problems.append(f"vocab_size = {spec.vocab_size} is smaller than the {len(tokenizer)} tokens of {source}")
    if spec.pad_multiple < 1 or spec.vocab_size % spec.pad_multiple:
        problems.append(f"vocab_size = {spec.vocab_size} is not a multiple of pad_multiple = {spec.pad_multiple}")
    if spec.text_vocab_size > min(spec.boi_id, spec.eoi_id, spec.token_offset):
        problems.append(f"text_vocab_size = {spec.text_vocab_size} overlaps the visual ids (boi_id = {spec.boi_id})")
    if problems:
        raise RadllmError(f"{where} does not match its tokenizer:\n  " + "\n  ".join(problems))


def vq_spec_fields(vq_dir: str | os.PathLike) -> dict[str, Any]:
    """The `VisualVocabSpec` fields that the VQ-GAN in `vq_dir` decides (codebook, code grid, image size, weights hash).

    `build_tokenizer` writes them into a new spec and `verify_vq` compares a spec with them, so a
    spec and its check can never disagree on how a VQ-GAN's settings map to spec fields.
    """
    geometry = tokenizer_geometry(vq_dir)  # any tokenizer format, read from its config alone
    return {
        "codebook_size": geometry.codebook_size,
        "grid_height": geometry.grid[0],
        "grid_width": geometry.grid[1],
        "image_size": geometry.image_size,
        "vq_hash": vq_weights_hash(vq_dir),
    }


def verify_vq(spec: VisualVocabSpec, vq_dir: str | os.PathLike, where: str) -> None:
    """Raise `RadllmError` unless the VQ-GAN in `vq_dir` is the one `spec` (from `where`) was built for.

    Encoding images with another VQ-GAN than the tokenizer's would give codes the model reads as
    different tokens, so shard writers and generators call this before mixing the two.
    """
    diffs = [
        f"{name}: {getattr(spec, name)!r} ({where}) vs {value!r} ({vq_dir})"
        for name, value in vq_spec_fields(vq_dir).items()
        if getattr(spec, name) != value
    ]
    if diffs:
        raise RadllmError(f"{where} was built for a different VQ-GAN than {vq_dir}:\n  " + "\n  ".join(diffs))
