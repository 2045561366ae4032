"""The single entry point from an image file to the pipeline's tensor."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from radllm.imaging.dicom import read_dicom
from radllm.imaging.formats import ImageFormat, image_format
from radllm.imaging.geometry import fit_to_square
from radllm.imaging.raster import read_raster


def read_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Decode a PNG, JPEG or DICOM file to float32 [H, W] in [0, 1] at its native resolution.

    0 is black (air, lungs) and 1 white (bone) whatever the source's bit depth or photometric
    interpretation. DICOM goes through its modality and VOI transforms (see `radllm.imaging.dicom`);
    multi-frame DICOM yields its first frame.

    Raises:
        RadllmError: missing, empty, corrupt, truncated or unsupported file; the message names it.
    """
    path = Path(path)
    if image_format(path) is ImageFormat.DICOM:
        return read_dicom(path)
    return read_raster(path)


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Decode `path` to the float32 tensor [1, size, size] in [0, 1] every radllm model consumes.

    Grayscale, 0 = black; the longer side is resized (antialiased) to `size` and the image is
    centred on a black square (see `fit_to_square`).

    Raises:
        RadllmError: as `read_grayscale`.
    """
    square = fit_to_square(read_grayscale(path), size)  # [size, size]
    return torch.from_numpy(square).unsqueeze(0)  # [1, size, size]
