"""DeepSpeed JSON configs from `ds_configs/` with their `"auto"` fields filled from the run config and model.

The JSON files hold what is a property of the parallel layout (ZeRO stage, offload, overlap);
everything that follows from the run (batch sizes, clipping, precision) or from the model
(bucket sizes scale with hidden_size², as in transformers' own DeepSpeed integration) is
`"auto"` and filled here, so one JSON serves every model size. A value left `"auto"` that this
module does not know is an error naming its key, never passed through to DeepSpeed.

The optimizer and LR schedule are not in the JSON: the trainer hands DeepSpeed its own AdamW
and LambdaLR (radllm.training.optim), which is DeepSpeedCPUAdam when `offload_optimizer` puts the
optimizer states on the CPU (`offloads_optimizer`), so one config file switches both.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError
from radllm.jsonl import read_json_file
from radllm.training.config import OptimOptions

#: The shipped configs live in the package (`radllm/ds_configs/`, package data; the checkout's
#: top-level `ds_configs/` links to it), so `ds_configs/zero3.json` resolves in an installed
#: radllm as in a checkout.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_SECTIONS = ("optimizer", "scheduler", "fp16")


def resolve_ds_path(path: str) -> Path:
    """The JSON file: as given if it exists, else relative to the radllm package (ds_configs/...)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if not candidate.is_absolute() and (PACKAGE_ROOT / candidate).is_file():
        return PACKAGE_ROOT / candidate
    raise RadllmError(f"deepspeed = {path!r}: no such DeepSpeed config file (looked in the working directory and {PACKAGE_ROOT})")


def load_ds_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a DeepSpeed JSON config; refuses sections the trainer provides itself."""
    path = resolve_ds_path(str(path))
    raw = read_json_file(path, "DeepSpeed config")
    if not isinstance(raw, dict):
        raise RadllmError(f"{path}: expected a JSON object")
    present = [key for key in FORBIDDEN_SECTIONS if key in raw]
    if present:
        raise RadllmError(
            f"{path}: remove {present}; the optimizer and LR schedule come from the run config's optim section, "
            "and precision from model.dtype (bf16 or fp32)"
        )
    return raw


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def offloads_optimizer(ds_config: dict[str, Any]) -> bool:
    """Whether ZeRO keeps the optimizer states on the CPU (or NVMe, stepped by the CPU)."""
    device = ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none")
    return zero_stage(ds_config) > 0 and device in ("cpu", "nvme")


def fill_ds_config(
    raw: dict[str, Any],
    optim: OptimOptions,
    world_size: int,
    hidden_size: int,
    bf16: bool,
    where: str = "DeepSpeed config",
    streams_per_rank: int = 1,
) -> dict[str, Any]:
    """A copy of `raw` with every `"auto"` replaced.

    Args:
        raw: the JSON as loaded by `load_ds_json`.
        optim: the run config's optim section (batch sizes, clipping).
        world_size: data-parallel ranks.
        hidden_size: the model's hidden size (bucket sizes).
        bf16: train in bfloat16 (else fp32).
        streams_per_rank: data streams each rank trains on (`radllm.training.data.owned_streams`):
            DeepSpeed accumulates `grad_accum` micro-batches of each.

    Raises:
        RadllmError: an `"auto"` this function cannot fill, naming its key.
    """
    filled = copy.deepcopy(raw)
    mbs, gas = optim.micro_batch_size, optim.grad_accum * streams_per_rank
    top = {
        "train_micro_batch_size_per_gpu": mbs,
        "gradient_accumulation_steps": gas,
        "train_batch_size": mbs * gas * world_size,
        "gradient_clipping": float(optim.grad_clip),
    }
    zero = {
        "reduce_bucket_size": hidden_size * hidden_size,
        "allgather_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
    }
    for key, value in top.items():
        if filled.get(key, "auto") == "auto":
            filled[key] = value
        elif filled[key] != value and key != "gradient_clipping":
            raise RadllmError(f"{where}: {key} = {filled[key]!r} disagrees with the run config ({value}); set it to \"auto\"")
    bf16_section = filled.setdefault("bf16", {"enabled": "auto"})
    if bf16_section.get("enabled") == "auto":
        bf16_section["enabled"] = bf16
    zero_section = filled.get("zero_optimization", {})
    for key, value in zero.items():
        if zero_section.get(key) == "auto":
            zero_section[key] = value
    left = [path for path in _auto_paths(filled)]
    if left:
        raise RadllmError(f"{where}: cannot fill \"auto\" at {left}; give a value")
    return filled


def _auto_paths(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        return [p for key, value in obj.items() for p in _auto_paths(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if obj == "auto" else []
