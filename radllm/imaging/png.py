"""Writing 8-bit grayscale PNGs of pipeline images (previews, generated X-rays, conversions)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from radllm import atomic
from radllm.errors import RadllmError


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """[1, H, W] or [H, W] float in [0, 1] (or uint8) -> uint8 [H, W]; floats rounded, clipped.

    Rounding (not truncation) makes `to_uint8` the inverse of reading an 8-bit PNG as value/255.
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"expected a [1, H, W] or [H, W] grayscale image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"expected float values in [0, 1] or uint8, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or infinite values")
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def save_png(image: torch.Tensor | np.ndarray, path: str | os.PathLike) -> None:
    """Write `image` ([1, H, W] or [H, W], float in [0, 1] or uint8) as an 8-bit grayscale PNG.

    The file appears atomically (temporary name, then rename), so a killed generation run never
    leaves a half-written PNG that a resumed run would take as done.

    Raises:
        RadllmError: `path` does not end in ".png".
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise RadllmError(f"{path}: save_png writes PNG files; give the output a .png suffix")
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")  # uint8 [H, W] -> mode "L"
    atomic.write_bytes(path, buffer.getvalue())
