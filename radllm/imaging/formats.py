"""Which decoder a file needs: decided by its content first, its suffix second.

Content wins because real archives mislabel files: DICOM files are often named by their SOP
Instance UID ("1.2.840.113619.2.55.3.604688119.868"), whose "suffix" is a number, and JPEGs are
sometimes saved as ".png". The suffix only decides for files whose first bytes carry no signature
(a DICOM written without the 128-byte preamble, or a corrupt PNG/JPEG that should fail loudly in
its own decoder rather than be called "unsupported").
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from radllm.errors import RadllmError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
SUPPORTED_SUFFIXES = RASTER_SUFFIXES + DICOM_SUFFIXES

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_DICOM_MAGIC_OFFSET = 128  # "DICM" follows the 128-byte preamble of a DICOM Part 10 file

# The most pixels any reader decodes: 2**27 ≈ 134 M (an 11,585² square), about nine times the
# largest digital chest detector (4,300 × 3,500). A header that claims more is a corrupt file or a
# decompression bomb, refused before anything is allocated.
MAX_PIXELS = 2**27


class ImageFormat(enum.Enum):
    """The decoder family for a file: Pillow (PNG/JPEG) or pydicom."""

    RASTER = "raster"
    DICOM = "dicom"


def sniff_format(path: Path) -> ImageFormat | None:
    """The format announced by the file's first bytes, or None when they carry no signature."""
    with open(path, "rb") as fh:
        head = fh.read(_DICOM_MAGIC_OFFSET + 4)
    if head[_DICOM_MAGIC_OFFSET:] == b"DICM":
        return ImageFormat.DICOM
    if head.startswith(_PNG_SIGNATURE) or head.startswith(_JPEG_SIGNATURE):
        return ImageFormat.RASTER
    return None


def image_format(path: str | os.PathLike) -> ImageFormat:
    """The decoder `path` needs.

    Raises:
        RadllmError: the file is missing or empty, or neither its content nor its suffix names a
            supported format.
    """
    path = Path(path)
    if not path.is_file():
        raise RadllmError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise RadllmError(f"{path}: image file is empty")
    sniffed = sniff_format(path)
    if sniffed is not None:
        return sniffed
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return ImageFormat.DICOM
    if suffix in RASTER_SUFFIXES:
        return ImageFormat.RASTER
    raise RadllmError(
        f"{path}: unsupported image type {suffix!r}; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        " or a DICOM file with the DICM preamble"
    )


def check_pixel_count(path: str | os.PathLike, width: int, height: int) -> None:
    """Refuse an image whose header claims more than `MAX_PIXELS` (or a non-positive size).

    Raises:
        RadllmError: naming the file, the claimed size and the limit.
    """
    if width < 1 or height < 1:
        raise RadllmError(f"{path}: header claims a {width}×{height} image; expected positive dimensions")
    if width * height > MAX_PIXELS:
        raise RadllmError(
            f"{path}: header claims {width}×{height} = {width * height:,} pixels, more than the {MAX_PIXELS:,} "
            "radllm decodes (a corrupt header or a decompression bomb)"
        )


def is_supported_image(path: str | os.PathLike) -> bool:
    """True when `path` has a supported suffix or, failing that, a PNG/JPEG/DICOM signature.

    Meant for scanning directories; it never raises. A True answer does not promise the file
    decodes (it may be corrupt): `read_grayscale` says so with a clear error.
    """
    path = Path(path)
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    try:
        return path.is_file() and sniff_format(path) is not None
    except OSError:
        return False
