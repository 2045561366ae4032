"""Tokenizer directories: radllm's own VQ checkpoint, and which implementation loads which format.

Layout of radllm's own format (Hugging Face style, no pickle anywhere):

    vq/
      model.safetensors   VQModel state dict (encoder, quantizer incl. usage EMA, decoder)
      config.json         VQConfig fields + {"format": "radllm-vq", "version": 1}

Every tokenizer directory has these two files; its config's "format" picks the implementation
(`TOKENIZER_FORMATS`: "radllm-vq" is `VQModel`, "llamagen-vq" a released LlamaGen tokenizer).
The sha256 of `model.safetensors` (`vq_weights_hash`) is the `vq_hash` recorded in the visual
vocabulary spec, so shards and models can prove which tokenizer produced their codes.
Training state (optimizers, discriminator, step) belongs to the trainer's own checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from radllm import atomic
from radllm.errors import RadllmError
from radllm.vocab_spec import sha256_file
from radllm.vq import llamagen
from radllm.vq.config import VQConfig
from radllm.vq.model import VQModel
from radllm.vq.tokenizer import (
    CONFIG_FILENAME,
    WEIGHTS_FILENAME,
    CodeGeometry,
    ImageTokenizer,
    check_state,
    config_from_object,
    read_config_object,
    read_weights,
)

VQ_FORMAT = "radllm-vq"
VQ_FORMAT_VERSION = 1


def save_vq(model: VQModel, directory: str | os.PathLike) -> Path:
    """Write `model` as a VQ directory, atomically replacing any previous one; returns its path."""
    directory = Path(directory)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    config = dataclasses.asdict(model.config) | {"format": VQ_FORMAT, "version": VQ_FORMAT_VERSION}
    with atomic.atomic_directory(directory) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILENAME), metadata={"format": "pt"})
        atomic.write_json(tmp / CONFIG_FILENAME, config)
    return directory


def load_vq_config(directory: str | os.PathLike) -> VQConfig:
    """Read and validate `config.json` of a radllm-vq directory.

    Raises:
        RadllmError: missing or unparsable file, wrong format/version, unknown or invalid fields.
    """
    path, obj = read_config_object(directory)
    if obj.pop("format", None) != VQ_FORMAT:
        raise RadllmError(f"{path}: 'format' must be {VQ_FORMAT!r}; this is not a radllm VQ checkpoint")
    return config_from_object(path, obj, VQConfig, VQ_FORMAT_VERSION, "VQ")


def vq_geometry(directory: Path) -> CodeGeometry:
    """Image size, code grid and codebook of a radllm-vq directory, from its config alone."""
    return CodeGeometry.of_square(load_vq_config(directory))


def load_radllm_vq(directory: Path, device: str | torch.device) -> VQModel:
    """Rebuild the VQModel of a radllm-vq directory on `device`, in eval mode."""
    config = load_vq_config(directory)
    path, state = read_weights(directory)
    model = VQModel(config)
    check_state(model.state_dict(), state, path)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


@dataclass(frozen=True)
class TokenizerFormat:
    """How radllm reads one "format" of tokenizer directory."""

    geometry: Callable[[Path], CodeGeometry]  # from config.json alone: what the vocabulary spec records
    load: Callable[[Path, str | torch.device], ImageTokenizer]  # the model on a device, in eval mode


# The one place a tokenizer implementation is registered: everything else reads directories
# through `load_vq` and `tokenizer_geometry`.
TOKENIZER_FORMATS: dict[str, TokenizerFormat] = {
    VQ_FORMAT: TokenizerFormat(geometry=vq_geometry, load=load_radllm_vq),
    llamagen.LLAMAGEN_FORMAT: TokenizerFormat(geometry=llamagen.llamagen_geometry, load=llamagen.load_llamagen),
}


def tokenizer_format(directory: str | os.PathLike) -> TokenizerFormat:
    """The implementation that reads `directory`, chosen by its config's "format".

    Raises:
        RadllmError: no readable `config.json`, or a format radllm does not read.
    """
    path, obj = read_config_object(directory)
    name = obj.get("format")
    if name not in TOKENIZER_FORMATS:
        raise RadllmError(f"{path}: 'format' is {name!r}; radllm reads image-tokenizer formats {sorted(TOKENIZER_FORMATS)}")
    return TOKENIZER_FORMATS[name]


def tokenizer_geometry(directory: str | os.PathLike) -> CodeGeometry:
    """Image size, code grid and codebook size of any tokenizer directory, without loading its weights.

    Raises:
        RadllmError: an unreadable or invalid `config.json`.
    """
    return tokenizer_format(directory).geometry(Path(directory))


def load_vq(directory: str | os.PathLike, device: str | torch.device = "cpu") -> ImageTokenizer:
    """Rebuild the image tokenizer of a tokenizer directory on `device`, in eval mode.

    Raises:
        RadllmError: missing/corrupt files, a format radllm does not read, or weights that do not
            match the config (missing, unexpected or differently shaped tensors, each named).
    """
    return tokenizer_format(directory).load(Path(directory), device)


def vq_weights_hash(directory: str | os.PathLike) -> str:
    """sha256 (hex) of the VQ weights file: the provenance id recorded as `vq_hash` in artifacts."""
    path = Path(directory) / WEIGHTS_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: missing VQ weights file")
    return sha256_file(path)
