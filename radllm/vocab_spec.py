"""The visual vocabulary spec (`radllm.json`): how image codes map into the LLM's token ids.

It travels with every artifact that depends on the mapping: the tokenizer directory, shards'
`index.json` and every exported model. Two artifacts built against different VQ checkpoints or
tokenizers would otherwise combine into silent garbage, so `check_compatible` turns any mismatch
into an error naming both sources and the differing field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.errors import RadllmError
from radllm.jsonl import read_json_file

SPEC_FILENAME = "radllm.json"
SPEC_VERSION = 1
BOI_TOKEN = "<boi>"
EOI_TOKEN = "<eoi>"


def image_token(code: int) -> str:
    """Token string of VQ code `code` (``<img_17>``)."""
    return f"<img_{code}>"


@dataclass(frozen=True)
class VisualVocabSpec:
    """Everything needed to turn VQ codes into token ids and back, plus provenance hashes."""

    codebook_size: int  # K: number of VQ codes
    grid_height: int  # code-grid rows per image (image_size // downsample)
    grid_width: int
    image_size: int  # pixels per side the VQ-GAN was trained at
    token_offset: int  # id of <img_0>; <img_k> = token_offset + k (contiguous)
    boi_id: int
    eoi_id: int
    text_vocab_size: int  # size of the base (text) tokenizer before extension
    vocab_size: int  # extended size, padded to a multiple of `pad_multiple` (embedding rows)
    pad_multiple: int = 64
    vq_hash: str = ""  # sha256 of the VQ weights file
    tokenizer_hash: str = ""  # sha256 of the base tokenizer files
    version: int = SPEC_VERSION

    @property
    def tokens_per_image(self) -> int:
        return self.grid_height * self.grid_width

    def code_to_id(self, code: int) -> int:
        return self.token_offset + int(code)

    def id_to_code(self, token_id: int) -> int:
        code = int(token_id) - self.token_offset
        if not 0 <= code < self.codebook_size:
            raise ValueError(f"token id {token_id} is not an image token (range {self.token_offset}..{self.token_offset + self.codebook_size - 1})")
        return code

    def is_image_id(self, token_id: int) -> bool:
        return self.token_offset <= int(token_id) < self.token_offset + self.codebook_size

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> "VisualVocabSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(obj) - names
        if unknown:
            raise RadllmError(f"{where}: unknown visual-vocab field(s) {sorted(unknown)}")
        try:
            spec = cls(**obj)
        except TypeError as err:
            raise RadllmError(f"{where}: incomplete visual vocab spec: {err}") from err
        if spec.version != SPEC_VERSION:
            raise RadllmError(f"{where}: visual vocab spec version {spec.version}, this radllm reads {SPEC_VERSION}")
        return spec


def save_spec(spec: VisualVocabSpec, directory: str | os.PathLike) -> Path:
    """Write `radllm.json` into `directory` atomically; returns its path."""
    path = Path(directory) / SPEC_FILENAME
    atomic.write_json(path, spec.to_json())
    return path


def load_spec(path: str | os.PathLike) -> VisualVocabSpec:
    """Read a spec from `radllm.json` or from a directory containing it."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: no visual vocab spec ({SPEC_FILENAME}) found")
    return VisualVocabSpec.from_json(read_json_file(path), str(path))


def check_compatible(expected: VisualVocabSpec, actual: VisualVocabSpec, expected_from: str, actual_from: str) -> None:
    """Raise `RadllmError` listing every field where two specs disagree."""
    diffs = [
        f"{f.name}: {getattr(expected, f.name)!r} ({expected_from}) vs {getattr(actual, f.name)!r} ({actual_from})"
        for f in dataclasses.fields(VisualVocabSpec)
        if getattr(expected, f.name) != getattr(actual, f.name)
    ]
    if diffs:
        raise RadllmError("visual vocabulary mismatch between artifacts; rebuild them from the same VQ-GAN and tokenizer:\n  " + "\n  ".join(diffs))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (provenance hash of weights and tokenizer files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """One hash over several files, order-independent by name (e.g. a tokenizer directory)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()
