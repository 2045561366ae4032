"""Colour to grayscale, shared by the PNG/JPEG and DICOM readers so both agree on the weights."""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights: the ones Pillow's convert("L") uses, so an RGB file and the same
# picture saved as grayscale by most tools give the same intensities.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def luminance(rgb: np.ndarray, max_value: float) -> np.ndarray:
    """[H, W, 3] integer or float RGB with channels in [0, max_value] -> float32 [H, W] in [0, 1].

    Computed in float so 16-bit colour data keeps its precision (Pillow's convert("L") would
    round to 8 bits first).
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB array, got shape {rgb.shape}")
    gray = rgb.astype(np.float64) @ LUMA_WEIGHTS  # [H, W]
    return np.clip(gray / max_value, 0.0, 1.0).astype(np.float32)
