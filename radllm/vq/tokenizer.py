"""What an image tokenizer is to the rest of radllm, in memory and on disk.

In memory, `ImageTokenizer`: the few things shard writers, generators and evaluators use (encode
images to code grids, decode code grids to images, and the sizes that the visual vocabulary spec
records). Consumers are typed against it, not against a concrete model, so a released tokenizer
(`radllm.vq.llamagen`) plugs in beside radllm's own `VQModel`.

On disk, a tokenizer directory is always `config.json` (with a "format" key naming the
implementation) next to `model.safetensors`; the helpers here read those two files with the same
error messages for every format. Which implementation reads which format is decided in one place,
`radllm.vq.checkpoint.TOKENIZER_FORMATS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from radllm.errors import RadllmError

WEIGHTS_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"

ConfigT = TypeVar("ConfigT")


@runtime_checkable
class ImageTokenizer(Protocol):
    """Images [B, 1, H, W] in [0, 1] <-> int64 code grids [B, h, w] with codes in [0, codebook_size).

    Implementations are torch modules returned by `radllm.vq.checkpoint.load_vq` in eval mode.
    """

    @property
    def image_size(self) -> int:
        """Pixels per side of the square images it encodes (what images are resized to first)."""
        ...

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w): the code grid of one `image_size` image."""
        ...

    @property
    def codebook_size(self) -> int:
        """K: the number of codes, i.e. of image tokens in the LLM vocabulary."""
        ...

    @property
    def device(self) -> torch.device:
        """Where its weights live (inputs are moved there)."""
        ...

    def encode(self, x: Tensor) -> Tensor:
        """int64 codes [B, h, w] of images `x` [B, 1, H, W] in [0, 1]."""
        ...

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Images [B, 1, H, W] in [0, 1] (clamped) from int64 codes [B, h, w]."""
        ...

    def eval(self) -> ImageTokenizer:
        """Inference mode (no statistics updated by `encode`); returns itself."""
        ...


class SquareGridSizes:
    """`image_size`, `grid` and `codebook_size` of a tokenizer module whose `config` has
    `image_size`, `grid_size` (codes per side) and `codebook_size`: mixed into each implementation."""

    config: Any

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def grid(self) -> tuple[int, int]:
        return (self.config.grid_size, self.config.grid_size)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size


@dataclass(frozen=True)
class CodeGeometry:
    """What a tokenizer directory's config decides for the visual vocabulary, read without its weights."""

    image_size: int
    grid: tuple[int, int]  # (h, w)
    codebook_size: int

    @classmethod
    def of_square(cls, config: Any) -> "CodeGeometry":
        """The geometry of a config with `image_size`, `grid_size` (codes per side) and `codebook_size`."""
        return cls(config.image_size, (config.grid_size, config.grid_size), config.codebook_size)


def read_config_object(directory: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(path, JSON object) of a tokenizer directory's `config.json`, "format" key included.

    Raises:
        RadllmError: missing or unparsable file, or JSON that is not an object.
    """
    path = Path(directory) / CONFIG_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: missing; {directory} is not a VQ checkpoint directory (expected {CONFIG_FILENAME} and {WEIGHTS_FILENAME})")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RadllmError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(obj, dict):
        raise RadllmError(f"{path}: expected a JSON object")
    return path, obj


def config_from_object(path: Path, obj: dict[str, Any], cls: type[ConfigT], version: int, what: str) -> ConfigT:
    """Build config dataclass `cls` from a config object whose "format" was already checked and removed.

    Args:
        path: the config file (named in errors).
        version: the only "version" this radllm reads for the format.
        what: the kind of checkpoint, as errors name it (e.g. "VQ").

    Raises:
        RadllmError: another version, fields `cls` does not have, or values it rejects.
    """
    found = obj.pop("version", None)
    if found != version:
        raise RadllmError(f"{path}: {what} checkpoint version {found!r}, this radllm reads version {version}")
    unknown = sorted(set(obj) - set(cls.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise RadllmError(f"{path}: unknown {what} config field(s) {unknown}")
    try:
        return cls(**obj)
    except RadllmError as err:
        raise RadllmError(f"{path}: {err}") from err
    except TypeError as err:
        raise RadllmError(f"{path}: invalid {what} config: {err}") from err


def read_weights(directory: str | os.PathLike) -> tuple[Path, dict[str, Tensor]]:
    """(path, CPU state dict) of a tokenizer directory's `model.safetensors`.

    Raises:
        RadllmError: the file is missing or not a readable safetensors file.
    """
    path = Path(directory) / WEIGHTS_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: missing VQ weights file")
    try:
        return path, load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise RadllmError(f"{path}: corrupt or unreadable safetensors file ({err})") from err


def check_state(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], path: Path, against: str = CONFIG_FILENAME) -> None:
    """Raise unless `state` has exactly the tensor names and shapes of `expected` (a model's state dict).

    Every problem names its tensor (missing, unexpected, or its two shapes), at most ten shown.

    Raises:
        RadllmError: naming `path`, `against` (what decided the expected shapes) and each tensor.
    """
    problems = [f"missing {name}" for name in expected if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [
        f"{name}: shape {list(state[name].shape)} in file, {list(tensor.shape)} expected by {against}"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} problems)" if len(problems) > 10 else "")
        raise RadllmError(f"{path}: weights do not match {against}: {shown}")
