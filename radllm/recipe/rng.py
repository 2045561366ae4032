"""Python, NumPy and torch random states as JSON values, for the checkpoints of every trainer.

One encoding, the LLM trainer's (its per-rank `trainer_rank{r}.json` files have always used it):

    python  [version, [625 ints], gauss]            random.getstate() as lists
    numpy   [name, {"ndarray": [...], "dtype": "uint32"}, pos, has_gauss, cached_gaussian]
    torch   base64 of the CPU generator's state bytes
    cuda    base64 of the current CUDA device's generator state (only when CUDA is available)

Only the current CUDA device is saved: every trainer runs one process per device, so the other
devices' generators of a process are never drawn from. VQ-GAN checkpoints written before this
module used plain lists (torch and numpy states as integer lists, `cuda` one list per device);
`set_rng_state` still restores those as they were saved.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy and torch (CPU and current CUDA device) generator states, JSON-ready."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, {"ndarray": keys.tolist(), "dtype": str(keys.dtype)}, pos, has_gauss, cached],
        "torch": _encode_bytes(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = _encode_bytes(torch.cuda.get_rng_state())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved (or a VQ-GAN checkpoint's older encoding); missing entries are left alone."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        keys = np.asarray(keys["ndarray"], dtype=keys["dtype"]) if isinstance(keys, dict) else np.asarray(keys, dtype=np.uint32)
        np.random.set_state((name, keys, pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(_decode_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        if isinstance(state["cuda"], str):
            torch.cuda.set_rng_state(_decode_bytes(state["cuda"]))
        else:  # a VQ-GAN checkpoint from before this module: every device's state
            torch.cuda.set_rng_state_all([_decode_bytes(device) for device in state["cuda"]])


def _encode_bytes(generator_state: torch.Tensor) -> str:
    return base64.b64encode(generator_state.numpy().tobytes()).decode()


def _decode_bytes(value: str | list[int]) -> torch.Tensor:
    """A uint8 generator state from base64 text, or from the byte values of the older VQ-GAN encoding."""
    if isinstance(value, str):
        return torch.frombuffer(bytearray(base64.b64decode(value)), dtype=torch.uint8)
    return torch.tensor(value, dtype=torch.uint8)
