"""Reading and writing CXR encoders: a directory (config.json + model.safetensors) or a bare
TorchXRayVision DenseNet-121 state dict. Nothing is ever downloaded or unpickled.

TorchXRayVision publishes its weights as pickled whole-model ``.pt`` files, which can run
arbitrary code when loaded, so radllm refuses them. Convert once, in an environment where you
trust the file and have ``torchxrayvision`` installed::

    python -c "import torchxrayvision as xrv, safetensors.torch as st; m = xrv.models.DenseNet(weights='densenet121-res224-all'); st.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, 'xrv-densenet121-all.safetensors')"

and pass the ``.safetensors`` file (or a ``.pt``/``.pth`` *state dict* saved with ``torch.save``,
which loads with ``weights_only=True``) to `load_cxr_encoder`. The state dict includes xrv's
``op_threshs`` buffer; outputs it marks NaN (not trained on that dataset) are dropped and the others
become the decision thresholds.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from radllm import atomic
from radllm.config import save_config
from radllm.encoders.architectures import DENSENET121_XRV, build_backbone
from radllm.encoders.densenet import (
    XRV_INPUT_SCALE,
    XRV_INPUT_SHIFT,
    XRV_INPUT_SIZE,
    XRV_PATHOLOGIES,
    XRV_THRESHOLD_KEY,
    XRV_TO_CHEXPERT,
)
from radllm.encoders.encoder import CXREncoder
from radllm.encoders.spec import EncoderSpec
from radllm.errors import RadllmError
from radllm.jsonl import read_json_file
from radllm.labels import OBSERVATIONS

CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "model.safetensors"
METRICS_FILENAME = "metrics.json"
TRAIN_CONFIG_FILENAME = "train_config.yaml"
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
CONVERSION_HINT = (
    "convert TorchXRayVision weights to a state dict once, in a trusted environment: "
    "python -c \"import torchxrayvision as xrv, safetensors.torch as st; "
    "m = xrv.models.DenseNet(weights='densenet121-res224-all'); "
    "st.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, 'xrv-densenet121-all.safetensors')\""
)


def load_cxr_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> CXREncoder:
    """Load an encoder, frozen (eval mode, no parameter gradients), on `device`.

    Args:
        path: an encoder directory (config.json + model.safetensors, as written by
            `save_cxr_encoder` or `radllm train-cxr-encoder`), or a TorchXRayVision DenseNet-121
            state dict file (``.safetensors``, or ``.pt``/``.pth`` loadable with weights_only).

    Raises:
        RadllmError: missing path or files, unsupported format or arch, pickled whole models,
            weights whose keys or shapes do not match the architecture.
    """
    path = Path(path)
    if path.is_dir():
        encoder = _load_directory(path)
    elif path.is_file():
        encoder = _encoder_from_xrv_state(read_state_dict(path), str(path))
    else:
        raise RadllmError(f"CXR encoder {path} does not exist (expected a directory with {CONFIG_FILENAME} or a weights file)")
    return encoder.to(device).freeze()


def save_cxr_encoder(
    model: CXREncoder,
    directory: str | os.PathLike,
    metrics: dict[str, Any] | None = None,
    run_config: Any | None = None,
) -> Path:
    """Atomically write `model` as an encoder directory that `load_cxr_encoder` reads back.

    Writes model.safetensors (the backbone's state dict), config.json (the `EncoderSpec`), and
    optionally metrics.json and train_config.yaml (`run_config`, a config dataclass).
    """
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.backbone.state_dict().items()}
    with atomic.atomic_directory(directory) as tmp:
        safetensors.torch.save_file(state, str(tmp / WEIGHTS_FILENAME), metadata={"format": "pt", "arch": model.spec.arch})
        atomic.write_json(tmp / CONFIG_FILENAME, model.spec.to_json())
        if metrics is not None:
            atomic.write_json(tmp / METRICS_FILENAME, metrics)
        if run_config is not None:
            save_config(run_config, tmp / TRAIN_CONFIG_FILENAME)
    return directory


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a torch state dict, without unpickling arbitrary objects."""
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path))
        except (safetensors.SafetensorError, OSError) as err:
            raise RadllmError(f"{path}: not a readable safetensors file: {err}") from err
    if path.suffix not in TORCH_SUFFIXES:
        raise RadllmError(f"{path}: unsupported weights format {path.suffix!r}; expected .safetensors, .pt or .pth")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refuses classes it does not know ("Unsupported global"): a pickled model.
        if "unsupported global" in str(err).lower():
            raise RadllmError(
                f"{path} holds pickled Python objects (e.g. a whole TorchXRayVision model), which radllm never unpickles; "
                f"{CONVERSION_HINT}"
            ) from err
        raise RadllmError(f"{path}: not a readable torch state dict (corrupt, or not written by torch.save)") from err
    except (RuntimeError, OSError, EOFError) as err:
        raise RadllmError(f"{path}: not a readable torch state dict: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise RadllmError(f"{path}: expected a state dict (mapping of names to tensors); {CONVERSION_HINT}")
    return state


def _load_directory(directory: Path) -> CXREncoder:
    config_path, weights_path = directory / CONFIG_FILENAME, directory / WEIGHTS_FILENAME
    for required in (config_path, weights_path):
        if not required.is_file():
            raise RadllmError(f"CXR encoder directory {directory} has no {required.name}")
    raw = read_json_file(config_path)
    spec = EncoderSpec.from_json(raw, str(config_path))
    backbone = build_backbone(spec.arch, len(spec.output_names), spec.arch_options, str(config_path))
    state = read_state_dict(weights_path)
    state.pop(XRV_THRESHOLD_KEY, None)  # thresholds live in config.json
    _load_strict(backbone, state, str(weights_path), spec.arch)
    return CXREncoder(backbone, spec)


def _encoder_from_xrv_state(state: dict[str, torch.Tensor], where: str) -> CXREncoder:
    """A DenseNet-121 encoder from an xrv state dict, exposing its trained, CheXpert-mapped outputs."""
    if "features.conv0.weight" not in state or "classifier.weight" not in state:
        raise RadllmError(
            f"{where}: not a TorchXRayVision DenseNet-121 state dict (no features.conv0.weight / classifier.weight); "
            f"bare weights files are only supported for {DENSENET121_XRV}, other encoders load from their directory"
        )
    op_threshs = state.pop(XRV_THRESHOLD_KEY, None)
    if op_threshs is not None and op_threshs.shape != (len(XRV_PATHOLOGIES),):
        raise RadllmError(f"{where}: {XRV_THRESHOLD_KEY} has shape {tuple(op_threshs.shape)}, expected ({len(XRV_PATHOLOGIES)},)")
    thresholds_by_output = [0.5] * len(XRV_PATHOLOGIES) if op_threshs is None else [float(t) for t in op_threshs]
    # CheXpert order; NaN operating points mark outputs these weights were not trained on.
    chexpert_to_output = {XRV_TO_CHEXPERT[name]: i for i, name in enumerate(XRV_PATHOLOGIES) if name in XRV_TO_CHEXPERT}
    labels = [obs for obs in OBSERVATIONS if obs in chexpert_to_output and not math.isnan(thresholds_by_output[chexpert_to_output[obs]])]
    if not labels:
        raise RadllmError(f"{where}: {XRV_THRESHOLD_KEY} marks every CheXpert-mapped output as untrained (NaN)")
    spec = EncoderSpec(
        arch=DENSENET121_XRV,
        label_names=labels,
        output_names=list(XRV_PATHOLOGIES),
        output_indices=[chexpert_to_output[obs] for obs in labels],
        thresholds=[thresholds_by_output[chexpert_to_output[obs]] for obs in labels],
        input_size=XRV_INPUT_SIZE,
        input_scale=XRV_INPUT_SCALE,
        input_shift=XRV_INPUT_SHIFT,
    )
    backbone = build_backbone(DENSENET121_XRV, len(XRV_PATHOLOGIES), {}, where)
    _load_strict(backbone, state, where, DENSENET121_XRV)
    return CXREncoder(backbone, spec)


def _load_strict(backbone: torch.nn.Module, state: dict[str, torch.Tensor], where: str, arch: str) -> None:
    """Load every tensor or fail naming the differences.

    BatchNorm's ``num_batches_tracked`` counters are filled in when a file lacks all of them:
    weights saved by PyTorch < 0.4.1 (as some xrv files were) have none, and eval mode never reads them.
    """
    expected = backbone.state_dict()
    counters = [k for k in expected if k.endswith("num_batches_tracked")]
    if counters and not any(k in state for k in counters):
        state = {**state, **{k: torch.zeros_like(expected[k]) for k in counters}}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape)
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{what} ({len(keys)}): {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise RadllmError(f"{where}: weights do not match the {arch} architecture: {details}")
    backbone.load_state_dict(state, strict=True)
