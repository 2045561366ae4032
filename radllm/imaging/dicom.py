"""DICOM through pydicom, to float32 grayscale in [0, 1] where 0 is black (air) and 1 white (bone).

The display pipeline of DICOM PS3.3 C.11, in order:

1. decode the stored values (native, RLE Lossless natively; JPEG, JPEG-LS and JPEG 2000 through
   whichever pydicom plugin is installed: Pillow, pylibjpeg-libjpeg, pylibjpeg-openjpeg);
   BitsStored 12/15/16, signed and unsigned, are sign-extended and masked by pydicom;
2. Modality LUT or RescaleSlope/RescaleIntercept (`apply_modality_lut`);
3. VOI LUT Sequence, else the first WindowCenter/WindowWidth pair (`apply_voi_lut`), then divided
   by that transform's output range so the window maps onto [0, 1]; without any VOI information
   the modality values are min-max normalised over the image;
4. MONOCHROME1 (high value = black) inverted, so lungs are dark for every vendor.

Multi-frame objects yield their first frame only (a chest radiograph is one frame; multi-frame
files are tomosynthesis or cine series, for which "the image" is not defined). Only the top-level
Modality/VOI attributes are read, not per-frame functional groups of enhanced objects.
PixelPaddingValue is not masked. RGB/YBR secondary captures become luminance; PALETTE COLOR and
other photometric interpretations are rejected.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radllm.errors import RadllmError
from radllm.imaging.color import luminance
from radllm.imaging.formats import check_pixel_count

PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
# pydicom converts YBR to RGB while decoding, so all of these arrive as RGB.
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")

# What pydicom and its codec plugins raise on malformed input: a bad element value, a short or
# garbled pixel stream, a missing required attribute. Caught only around calls that parse file
# content, so bugs in this module still surface as tracebacks.
MALFORMED_INPUT_ERRORS = (
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    NotImplementedError,
    RuntimeError,
    OSError,
    EOFError,
    struct.error,
)

# Transfer syntax implied by the encoding pydicom detected, for files without File Meta
# Information (ACR-NEMA style or preamble-less dumps): (is_implicit_VR, is_little_endian) -> UID.
_SYNTAX_FOR_ENCODING = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def read_dicom(path: Path) -> np.ndarray:
    """Decode the first frame of a DICOM file to display-ready float32 [H, W] in [0, 1].

    Raises:
        RadllmError: the file does not parse, has no pixel data, needs a decoder that is not
            installed, or its pixel data or display attributes are invalid.
    """
    try:
        # force=True also reads preamble-less files; content that is not DICOM at all then
        # fails below as "no pixel data".
        ds = pydicom.dcmread(path, force=True)
    except MALFORMED_INPUT_ERRORS as err:
        raise RadllmError(f"{path}: cannot parse DICOM: {err}") from err
    if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        raise RadllmError(f"{path}: DICOM has no pixel data (not an image object, or the file is truncated)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in MONOCHROME + COLOR:
        raise RadllmError(
            f"{path}: unsupported PhotometricInterpretation {photometric!r}; expected MONOCHROME1, "
            f"MONOCHROME2 or one of {', '.join(COLOR)}"
        )
    _ensure_transfer_syntax(ds, path)
    _require_decoder(UID(ds.file_meta.TransferSyntaxUID), path)
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except MALFORMED_INPUT_ERRORS as err:
        raise RadllmError(f"{path}: DICOM Rows/Columns missing or invalid: {err}") from err
    check_pixel_count(path, columns, rows)
    try:
        ds.pixel_array_options(index=0)  # decode the first frame only
        pixels = ds.pixel_array  # [H, W] (monochrome) or [H, W, 3] (colour, as RGB)
        if photometric in MONOCHROME:
            return _monochrome_display(pixels, ds, invert=photometric == "MONOCHROME1", path=path)
        return luminance(pixels, float(2 ** int(ds.BitsStored) - 1))
    except MALFORMED_INPUT_ERRORS as err:
        raise RadllmError(f"{path}: cannot decode DICOM pixel data: {err}") from err


def _ensure_transfer_syntax(ds: Dataset, path: Path) -> None:
    """Give files without File Meta Information the transfer syntax their encoding implies."""
    if ds.file_meta.get("TransferSyntaxUID") is not None:
        return
    syntax = _SYNTAX_FOR_ENCODING.get(ds.original_encoding)
    if syntax is None:
        raise RadllmError(f"{path}: DICOM has no TransferSyntaxUID and its encoding could not be determined")
    ds.file_meta.TransferSyntaxUID = syntax


def _require_decoder(syntax: UID, path: Path) -> None:
    """Fail with the package to install when no plugin can decode `syntax` in this environment."""
    if not syntax.is_transfer_syntax:
        raise RadllmError(f"{path}: unknown transfer syntax {syntax}")
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise RadllmError(f"{path}: pydicom cannot decode transfer syntax {syntax.name} ({syntax})") from err
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies)
        raise RadllmError(
            f"{path}: no installed decoder for transfer syntax {syntax.name} ({syntax}); install one of: {options}"
        )


def _monochrome_display(pixels: np.ndarray, ds: Dataset, invert: bool, path: Path) -> np.ndarray:
    """Stored values [H, W] -> modality -> VOI -> [0, 1] (MONOCHROME1 inverted).

    Raises:
        RadllmError: the modality transform gives NaN or infinite values (a NaN or overflowing
            RescaleSlope/RescaleIntercept), or the VOI window's output range is not finite.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        values = apply_modality_lut(pixels, ds)
    if not np.isfinite(values).all():
        raise RadllmError(
            f"{path}: the modality transform gives non-finite pixel values (RescaleSlope={ds.get('RescaleSlope')!r}, "
            f"RescaleIntercept={ds.get('RescaleIntercept')!r}); expected finite rescale values within float range"
        )
    voi = _voi_kind(ds)
    if voi == "lut":
        # A LUT is indexed by integers; round the (possibly rescaled, float) modality values
        # instead of letting the index cast truncate them.
        values = np.rint(values).astype(np.int64)
    if voi is None:
        shown = values.astype(np.float64)
        low, high = float(shown.min()), float(shown.max())
    else:
        shown = apply_voi_lut(values, ds, index=0).astype(np.float64)
        low, high = _voi_output_range(ds, voi)
        if not (np.isfinite([low, high]).all() and np.isfinite(shown).all()):
            raise RadllmError(f"{path}: the VOI window/LUT gives non-finite values (WindowCenter={ds.get('WindowCenter')!r}, WindowWidth={ds.get('WindowWidth')!r})")
    if high == low:  # a constant image carries no contrast to show
        gray = np.zeros(shown.shape, dtype=np.float32)
    else:
        # (high - low) is negative for a negative RescaleSlope; the division keeps the sense right.
        gray = np.clip((shown - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return 1.0 - gray if invert else gray


def _voi_kind(ds: Dataset) -> str | None:
    """Which VOI transform `apply_voi_lut` applies: "lut" (preferred, as pydicom does), "window", or None."""
    sequence = ds.get("VOILUTSequence")
    if sequence and all(sequence[0].get(k) is not None for k in ("LUTDescriptor", "LUTData")):
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def _voi_output_range(ds: Dataset, voi: str) -> tuple[float, float]:
    """(output for the darkest input, output for the brightest input) of the VOI transform.

    Found by running pydicom's own transform on probe inputs rather than restating its range
    rules: a window clamps at ±infinity to the two ends of its output range; a LUT's outputs are
    its entries, and the lowest and highest entry are taken as black and white (many files declare
    16 bits per entry while holding 12-bit values, so the declared depth is not trusted).
    """
    if voi == "window":
        with np.errstate(over="ignore"):
            ends = apply_voi_lut(np.array([-np.inf, np.inf]), ds, index=0)
        return float(ends[0]), float(ends[1])
    entries, first_mapped, _ = ds.VOILUTSequence[0].LUTDescriptor
    domain = np.arange(first_mapped, first_mapped + (entries or 2**16), dtype=np.int64)
    outputs = apply_voi_lut(domain, ds, index=0)
    return float(outputs.min()), float(outputs.max())
