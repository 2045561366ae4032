"""PNG and JPEG through Pillow, to float32 grayscale in [0, 1] at native resolution.

Bit depth is read from the decoded mode rather than assumed: 16-bit grayscale PNG ("I;16*", or
"I" in older Pillow releases) is scaled by 65535, so a 12-bit X-ray stored in a 16-bit PNG keeps
all its levels instead of being clipped at 255. Pillow reduces 16-bit *colour* PNG to 8 bits per
channel when decoding; that precision cannot be recovered here. Alpha is dropped rather than
composited: in exported radiographs the gray channel is the measurement and alpha is an artefact of
the export tool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from radllm.errors import RadllmError
from radllm.imaging.color import luminance
from radllm.imaging.formats import check_pixel_count

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_GRAY_WITH_ALPHA_MODES = ("LA", "La")
_COLOR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")


def read_raster(path: Path) -> np.ndarray:
    """Decode a PNG or JPEG file to float32 [H, W] in [0, 1] (EXIF orientation applied).

    Raises:
        RadllmError: the file is not a decodable image (corrupt, truncated, too large) or its
            pixel mode has no grayscale meaning.
    """
    try:
        with Image.open(path) as image:
            check_pixel_count(path, *image.size)
            image.load()  # decode now: a truncated file fails here, not later in a worker
            upright = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as err:
        raise RadllmError(f"{path}: image is too large to decode safely ({err})") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise RadllmError(f"{path}: cannot decode image (truncated?): {err}") from err
    return _to_gray(upright, path)


def _to_gray(image: Image.Image, path: Path) -> np.ndarray:
    """Any Pillow mode a PNG/JPEG decodes to -> float32 [H, W] in [0, 1]."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode in _GRAY_WITH_ALPHA_MODES:
        return np.asarray(image.getchannel(0), dtype=np.float32) / 255.0
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float32)  # uint16 ("I;16*") or int32 ("I")
        return np.clip(values / 65535.0, 0.0, 1.0)
    if mode in _COLOR_MODES:
        rgb = np.asarray(image.convert("RGB"))  # [H, W, 3] uint8; palettes expanded
        return luminance(rgb, 255.0)
    raise RadllmError(f"{path}: unsupported pixel mode {mode!r} for a grayscale radiograph")
