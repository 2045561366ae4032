"""The VQ checkpoint directory: the artifact every image-tokenizing step loads.

Layout (Hugging Face style, no pickle anywhere):

    vq/
      model.safetensors   VQModel state dict (encoder, quantizer incl. usage EMA, decoder)
      config.json         VQConfig fields + {"format": "radllm-vq", "version": 1}

The sha256 of `model.safetensors` (`vq_weights_hash`) is the `vq_hash` recorded in the visual
vocabulary spec, so shards and models can prove which tokenizer produced their codes.
Training state (optimizers, discriminator, step) belongs to the trainer's own checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from radllm import atomic
from radllm.errors import RadllmError
from radllm.vocab_spec import sha256_file
from radllm.vq.config import VQConfig
from radllm.vq.model import VQModel

WEIGHTS_FILENAME = "model.safetensors"
CONFIG_FILENAME = "config.json"
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
    """Read and validate `config.json` of a VQ directory.

    Raises:
        RadllmError: missing or unparsable file, wrong format/version, unknown or invalid fields.
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
    if obj.pop("format", None) != VQ_FORMAT:
        raise RadllmError(f"{path}: 'format' must be {VQ_FORMAT!r}; this is not a radllm VQ checkpoint")
    version = obj.pop("version", None)
    if version != VQ_FORMAT_VERSION:
        raise RadllmError(f"{path}: VQ checkpoint version {version!r}, this radllm reads version {VQ_FORMAT_VERSION}")
    names = {f.name for f in dataclasses.fields(VQConfig)}
    unknown = sorted(set(obj) - names)
    if unknown:
        raise RadllmError(f"{path}: unknown VQ config field(s) {unknown}")
    try:
        return VQConfig(**obj)
    except RadllmError as err:
        raise RadllmError(f"{path}: {err}") from err
    except TypeError as err:
        raise RadllmError(f"{path}: invalid VQ config: {err}") from err


def load_vq(directory: str | os.PathLike, device: str | torch.device = "cpu") -> VQModel:
    """Rebuild the VQModel of a VQ directory on `device`, in eval mode.

    Raises:
        RadllmError: missing/corrupt files, or weights that do not match the config (missing,
            unexpected or differently shaped tensors, each named).
    """
    config = load_vq_config(directory)
    path = Path(directory) / WEIGHTS_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: missing VQ weights file")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise RadllmError(f"{path}: corrupt or unreadable safetensors file ({err})") from err
    model = VQModel(config)
    expected = model.state_dict()
    problems = [f"missing {name}" for name in expected if name not in state]
    problems += [f"unexpected {name}" for name in state if name not in expected]
    problems += [
        f"{name}: shape {list(state[name].shape)} in file, {list(tensor.shape)} expected by {CONFIG_FILENAME}"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} problems)" if len(problems) > 10 else "")
        raise RadllmError(f"{path}: weights do not match {CONFIG_FILENAME}: {shown}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def vq_weights_hash(directory: str | os.PathLike) -> str:
    """sha256 (hex) of the VQ weights file: the provenance id recorded as `vq_hash` in artifacts."""
    path = Path(directory) / WEIGHTS_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: missing VQ weights file")
    return sha256_file(path)
