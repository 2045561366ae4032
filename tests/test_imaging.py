"""Image ingest: PNG/JPEG/DICOM decoding, display transforms, geometry, PNG writing and the CLI.

DICOM files are built here with pydicom; expected values come from the DICOM standard's formulas
computed by hand, from a second decoder (Pillow on the same JPEG bytes, torch's antialiased
resize), or from pydicom's bundled lossless-codec copies of one image.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, features
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from radllm.cli import image_convert
from radllm.errors import RadllmError
from radllm.imaging import (
    SUPPORTED_SUFFIXES,
    fit_to_square,
    is_supported_image,
    load_image,
    read_grayscale,
    save_png,
)

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation



def chest(height: int = 24, width: int = 20) -> np.ndarray:
    """Float [H, W] in [0, 1]: bright body, two dark lungs; (6, 5) lies inside the left lung."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.full((height, width), 0.8)
    for cx in (width * 0.28, width * 0.72):
        lung = ((xx - cx) / (width * 0.18)) ** 2 + ((yy - height * 0.45) / (height * 0.3)) ** 2 <= 1
        image[lung] = 0.15
    image[:, width // 2] = 1.0  # spine
    return image


LUNG = (10, 5)  # inside the left lung of chest()
SPINE = (10, 10)


def dicom_dataset(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    signed: bool = False,
    frames: int = 1,
) -> FileDataset:
    """A DX dataset whose PixelData holds `stored` ([H, W] or [F, H, W]) masked to BitsStored.

    Masking writes negative values the way a 12-bit signed modality does (upper bits zero), so
    decoding them correctly requires sign extension from bit BitsStored-1.
    """
    bits_stored = bits_stored or bits_allocated
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("built", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    container = np.uint8 if bits_allocated == 8 else np.uint16
    masked = stored.astype(np.int64) & ((1 << bits_stored) - 1)
    ds.PixelData = masked.astype(container).tobytes()
    return ds


def write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def window_fraction(x: float, center: float, width: float) -> float:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window mapped onto [0, 1], written out independently."""
    if x <= center - 0.5 - (width - 1) / 2:
        return 0.0
    if x > center - 0.5 + (width - 1) / 2:
        return 1.0
    return (x - (center - 0.5)) / (width - 1) + 0.5


def minmax(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


def pillow_pixels(source: Path | io.BytesIO) -> tuple[str, np.ndarray]:
    """(mode, pixels) as Pillow decodes `source`: the second opinion several tests compare with."""
    with Image.open(source) as image:
        return image.mode, np.asarray(image)


def pydicom_test_file(name: str) -> Path:
    path = Path(pydicom.data.__file__).parent / "test_files" / name
    if not path.is_file():
        pytest.skip(f"pydicom does not ship {name}")
    return path



def test_monochrome1_and_monochrome2_of_the_same_anatomy_decode_identically(tmp_path):
    anatomy = np.rint(chest() * 4095).astype(np.int64)  # 12-bit, high = bright bone
    mono2 = write(dicom_dataset(anatomy, bits_stored=12), tmp_path / "mono2.dcm")
    # MONOCHROME1 stores the negative: high values are black.
    mono1 = write(dicom_dataset(4095 - anatomy, bits_stored=12, photometric="MONOCHROME1"), tmp_path / "mono1.dcm")
    a, b = read_grayscale(mono2), read_grayscale(mono1)
    np.testing.assert_allclose(a, minmax(anatomy), atol=1e-6)
    np.testing.assert_allclose(b, a, atol=1e-6)
    assert b[LUNG] < 0.1 and b[SPINE] > 0.9  # lungs stay dark, spine white


def test_window_center_width_gives_the_standard_linear_mapping(tmp_path):
    center, width = 2048, 1024
    values = np.array([[0, 1000, 1535, 1536, 1792, 2048, 2304, 2559, 2560, 4095]])
    ds = dicom_dataset(values, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = center, width
    got = read_grayscale(write(ds, tmp_path / "win.dcm"))[0]
    expected = [window_fraction(v, center, width) for v in values[0]]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[1] == 0.0 and got[-1] == 1.0  # below / above the window
    assert abs(got[5] - 0.5) < 1e-3  # the centre maps to mid-gray
    assert abs(got[4] - 0.25) < 1e-3


def test_first_of_several_windows_is_used(tmp_path):
    ds = dicom_dataset(np.array([[100, 500, 900]]), bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = [500, 2000], [801, 100]
    got = read_grayscale(write(ds, tmp_path / "windows.dcm"))[0]
    np.testing.assert_allclose(got, [window_fraction(v, 500, 801) for v in (100, 500, 900)], atol=1e-6)


def test_rescale_slope_intercept_applies_before_the_window(tmp_path):
    slope, intercept, center, width = 0.5, -100.0, 400.0, 201.0
    stored = np.array([[0, 600, 900, 1000, 1100, 1400, 4095]])
    ds = dicom_dataset(stored, bits_stored=12)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter, ds.WindowWidth = center, width
    got = read_grayscale(write(ds, tmp_path / "rescale.dcm"))[0]
    expected = [window_fraction(v * slope + intercept, center, width) for v in stored[0]]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert abs(got[3] - 0.5) < 1e-2  # stored 1000 -> 400 HU-like units = the centre


def test_rescale_without_window_is_min_max_of_modality_values(tmp_path):
    stored = np.array([[10, 20, 40]])
    ds = dicom_dataset(stored)
    ds.RescaleSlope, ds.RescaleIntercept = -1.0, 0.0  # a negative slope reverses the order
    got = read_grayscale(write(ds, tmp_path / "negslope.dcm"))[0]
    np.testing.assert_allclose(got, minmax(-stored[0].astype(float)), atol=1e-6)


def test_voi_lut_sequence_takes_precedence_over_the_window(tmp_path):
    first_mapped, entries = 1000, 256
    lut = np.rint(4095 * (np.arange(entries) / (entries - 1)) ** 0.5).astype(int)  # gamma curve, 12-bit values
    item = Dataset()
    item.LUTDescriptor = [entries, first_mapped, 16]  # declared 16 bits, 12-bit content (common)
    item.add_new(0x00283006, "OW", lut.astype("<u2").tobytes())  # LUTData, as most files store it
    stored = np.array([[0, 999, 1000, 1064, 1100, 1255, 1337, 1345, 3000]])
    ds = dicom_dataset(stored, bits_stored=12)
    ds.VOILUTSequence = Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 2048, 4096  # must be ignored in favour of the LUT
    got = read_grayscale(write(ds, tmp_path / "lut.dcm"))[0]
    index = np.clip(stored[0] - first_mapped, 0, entries - 1)
    np.testing.assert_allclose(got, lut[index] / 4095, atol=1e-6)

    # With a rescale the LUT input is fractional; it is rounded to the nearest entry, not truncated.
    ds.RescaleSlope, ds.RescaleIntercept = 0.75, 0.0
    got = read_grayscale(write(ds, tmp_path / "lut_rescaled.dcm"))[0]
    index = np.clip(np.rint(stored[0] * 0.75).astype(int) - first_mapped, 0, entries - 1)
    assert np.any(np.rint(stored[0] * 0.75) != np.floor(stored[0] * 0.75))  # the case is exercised
    np.testing.assert_allclose(got, lut[index] / 4095, atol=1e-6)


@pytest.mark.parametrize("bits_stored", [12, 15, 16])
@pytest.mark.parametrize("signed", [False, True])
def test_bit_depths_and_sign(tmp_path, bits_stored, signed):
    if signed:
        low, high = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
        values = np.array([[low, -1000, -1, 0, 1, high]])
    else:
        low, high = 0, (1 << bits_stored) - 1
        values = np.array([[low, 1, 1000, high // 2, high - 1, high]])
    path = write(dicom_dataset(values, bits_stored=bits_stored, signed=signed), tmp_path / "bits.dcm")
    np.testing.assert_allclose(read_grayscale(path)[0], minmax(values[0]), atol=1e-6)


def test_signed_window_over_negative_values(tmp_path):
    values = np.array([[-2048, -600, -100, 0, 100, 600, 2047]])
    ds = dicom_dataset(values, bits_stored=12, signed=True)
    ds.WindowCenter, ds.WindowWidth = 0, 1001
    got = read_grayscale(write(ds, tmp_path / "signed_win.dcm"))[0]
    np.testing.assert_allclose(got, [window_fraction(v, 0, 1001) for v in values[0]], atol=1e-6)


def test_eight_bit_dicom_and_constant_image(tmp_path):
    values = np.array([[0, 64, 255]])
    path = write(dicom_dataset(values, bits_allocated=8), tmp_path / "u8.dcm")
    np.testing.assert_allclose(read_grayscale(path)[0], values[0] / 255, atol=1e-6)
    flat = write(dicom_dataset(np.full((3, 4), 77)), tmp_path / "flat.dcm")
    assert np.array_equal(read_grayscale(flat), np.zeros((3, 4), np.float32))


def test_multi_frame_yields_the_first_frame(tmp_path):
    frames = np.stack([chest() * 4095, 4095 - chest() * 4095]).astype(np.int64)  # [2, H, W]
    path = write(dicom_dataset(frames, bits_stored=12, frames=2), tmp_path / "multi.dcm")
    np.testing.assert_allclose(read_grayscale(path), minmax(frames[0]), atol=1e-6)


def test_rgb_secondary_capture_becomes_luminance(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)  # [1, 4, 3]
    ds = dicom_dataset(np.zeros((1, 4)), bits_allocated=8)
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "RGB"
    ds.PixelData = rgb.tobytes()
    got = read_grayscale(write(ds, tmp_path / "rgb.dcm"))[0]
    np.testing.assert_allclose(got, [0.299, 0.587, 0.114, 1.0], atol=1e-6)


def test_dicom_detected_without_suffix_and_with_uid_like_name(tmp_path):
    anatomy = np.rint(chest() * 4095).astype(np.int64)
    ds = dicom_dataset(anatomy, bits_stored=12)
    for name in ("IM0001", "1.2.840.113619.2.55.3.604"):
        path = write(ds, tmp_path / name)
        assert is_supported_image(path)
        np.testing.assert_allclose(read_grayscale(path), minmax(anatomy), atol=1e-6)


def test_dicom_without_file_meta_is_read_from_its_encoding(tmp_path):
    anatomy = np.rint(chest() * 4095).astype(np.int64)
    ds = dicom_dataset(anatomy, bits_stored=12)
    raw = tmp_path / "raw.dcm"
    pydicom.dcmwrite(raw, Dataset(ds), implicit_vr=True, little_endian=True)  # no preamble, no meta
    assert raw.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_grayscale(raw), minmax(anatomy), atol=1e-6)



def test_rle_lossless_decodes_to_the_uncompressed_pixels(tmp_path):
    anatomy = np.rint(chest() * 4095).astype(np.uint16)
    plain = write(dicom_dataset(anatomy, bits_stored=12), tmp_path / "plain.dcm")
    ds = dicom_dataset(anatomy, bits_stored=12)
    ds.compress(RLELossless, anatomy, encoding_plugin="pydicom")
    rle = write(ds, tmp_path / "rle.dcm")
    assert pydicom.dcmread(rle).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(read_grayscale(rle), read_grayscale(plain))


def encapsulated(image: np.ndarray, syntax: str, payload: bytes, bits: int) -> FileDataset:
    ds = dicom_dataset(image, bits_allocated=8 if bits == 8 else 16, bits_stored=bits)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([payload])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01" if syntax == JPEGBaseline8Bit else "00"
    return ds


def test_jpeg_baseline_matches_pillow_decoding_the_same_bytes(tmp_path):
    # No JPEG encoder is installed for pydicom, so Pillow's JPEG is wrapped into a DICOM.
    assert get_decoder(JPEGBaseline8Bit).is_available, "pillow or pylibjpeg-libjpeg should decode JPEG"
    image = np.rint(chest(32, 24) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    path = write(encapsulated(image, JPEGBaseline8Bit, buffer.getvalue(), bits=8), tmp_path / "jpeg.dcm")
    reference = pillow_pixels(io.BytesIO(buffer.getvalue()))[1]
    got = read_grayscale(path)
    assert got.shape == image.shape
    np.testing.assert_allclose(got, minmax(reference), atol=3 / 255)  # IDCTs may differ by 1 level


@pytest.mark.skipif(not features.check("jpg_2000"), reason="Pillow built without OpenJPEG")
def test_jpeg2000_lossless_16_bit_decodes_exactly(tmp_path):
    anatomy = np.rint(chest(32, 24) * 65535).astype(np.uint16)
    if not get_decoder(JPEG2000Lossless).is_available:
        pytest.skip("no JPEG 2000 decoder installed")
    buffer = io.BytesIO()
    Image.fromarray(anatomy).save(buffer, format="JPEG2000", no_jp2=True, irreversible=False)  # lossless
    path = write(encapsulated(anatomy, JPEG2000Lossless, buffer.getvalue(), bits=16), tmp_path / "j2k.dcm")
    np.testing.assert_allclose(read_grayscale(path), minmax(anatomy), atol=1e-6)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_codecs_agree_with_the_uncompressed_original(name):
    compressed = pydicom_test_file(name)
    syntax = pydicom.dcmread(compressed, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if not get_decoder(syntax).is_available:
        pytest.skip(f"no decoder installed for {syntax.name}")
    original = read_grayscale(pydicom_test_file("MR_small.dcm"))
    assert original.shape == (64, 64) and original.max() > original.min()
    np.testing.assert_array_equal(read_grayscale(compressed), original)


def test_missing_decoder_names_the_transfer_syntax_and_package(tmp_path):
    if get_decoder(HTJ2KLossless).is_available:
        pytest.skip("an HTJ2K decoder is installed here")
    image = np.zeros((4, 4), dtype=np.uint16)
    path = write(encapsulated(image, HTJ2KLossless, b"\xff\x4f\xff\x51" + b"\0" * 60, bits=16), tmp_path / "ht.dcm")
    with pytest.raises(RadllmError) as err:
        read_grayscale(path)
    message = str(err.value)
    assert "ht.dcm" in message and "High-Throughput JPEG 2000" in message and "pylibjpeg-openjpeg" in message



def test_dicom_without_pixel_data(tmp_path):
    ds = dicom_dataset(np.zeros((2, 2)))
    del ds.PixelData
    path = write(ds, tmp_path / "x.dcm")
    with pytest.raises(RadllmError, match=r"x\.dcm: DICOM has no pixel data"):
        read_grayscale(path)


def test_truncated_dicom_pixel_data(tmp_path):
    full = write(dicom_dataset(np.rint(chest() * 4095).astype(np.int64), bits_stored=12), tmp_path / "full.dcm")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(RadllmError, match=r"cut\.dcm: cannot decode DICOM pixel data: .*less than expected"):
        read_grayscale(cut)
    head = tmp_path / "head.dcm"
    head.write_bytes(full.read_bytes()[:300])  # stops inside the header
    with pytest.raises(RadllmError, match=r"head\.dcm: "):
        read_grayscale(head)


def test_garbage_with_dicom_suffix(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"this is not a DICOM file at all" * 8)
    with pytest.raises(RadllmError, match=r"junk\.dcm: "):
        read_grayscale(path)


def test_corrupt_compressed_stream(tmp_path):
    image = np.zeros((16, 16), dtype=np.uint8)
    path = write(encapsulated(image, JPEGBaseline8Bit, b"\xff\xd8\xff\xe0garbage", bits=8), tmp_path / "bad.dcm")
    with pytest.raises(RadllmError, match=r"bad\.dcm: cannot decode DICOM pixel data"):
        read_grayscale(path)


def test_palette_color_dicom_is_rejected(tmp_path):
    ds = dicom_dataset(np.zeros((2, 2)), bits_allocated=8, photometric="PALETTE COLOR")
    with pytest.raises(RadllmError, match=r"pal\.dcm: unsupported PhotometricInterpretation 'PALETTE COLOR'"):
        read_grayscale(write(ds, tmp_path / "pal.dcm"))



def test_png_16_bit_keeps_every_level(tmp_path):
    values = np.array([[0, 1, 255, 256, 300, 4095, 40000, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert pillow_pixels(path)[0].startswith("I")
    np.testing.assert_allclose(read_grayscale(path)[0], values[0] / 65535, rtol=0, atol=1e-7)


def test_png_8_bit_gray_and_gray_alpha(tmp_path):
    values = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "l.png")
    np.testing.assert_allclose(read_grayscale(tmp_path / "l.png")[0], values[0] / 255, atol=1e-7)
    alpha = np.array([[255, 0, 10, 255]], dtype=np.uint8)
    Image.fromarray(np.stack([values, alpha], axis=-1), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_grayscale(tmp_path / "la.png")[0], values[0] / 255, atol=1e-7)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_color_png_becomes_luminance(tmp_path, mode):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    rgb[0, 0], rgb[0, 1] = (255, 0, 0), (0, 0, 255)
    image = Image.fromarray(rgb)
    if mode == "RGBA":
        image.putalpha(128)
    elif mode == "P":
        image = image.quantize(colors=256)
    path = tmp_path / f"{mode}.png"
    image.save(path)
    got = read_grayscale(path)
    reference = np.asarray(image.convert("L"), dtype=np.float32) / 255  # Pillow's own BT.601 luma
    np.testing.assert_allclose(got, reference, atol=1 / 255 + 1e-6)
    if mode != "P":
        assert abs(got[0, 0] - 0.299) < 1e-6 and abs(got[0, 1] - 0.114) < 1e-6


def test_jpeg_gray_and_exif_orientation(tmp_path):
    image = np.rint(chest(12, 20) * 255).astype(np.uint8)  # [12, 20]
    plain = tmp_path / "plain.jpg"
    Image.fromarray(image).save(plain, quality=95)
    np.testing.assert_allclose(read_grayscale(plain), pillow_pixels(plain)[1] / 255, atol=1e-7)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    rotated = tmp_path / "rotated.jpeg"
    Image.fromarray(image).save(rotated, quality=95, exif=exif)
    got = read_grayscale(rotated)
    assert got.shape == (20, 12)
    np.testing.assert_allclose(got, np.rot90(read_grayscale(plain), k=-1), atol=2 / 255)


def test_content_wins_over_a_wrong_suffix(tmp_path):
    image = np.array([[10, 200]], dtype=np.uint8)
    path = tmp_path / "actually_png.jpg"
    Image.fromarray(image).save(path, format="PNG")
    np.testing.assert_allclose(read_grayscale(path)[0], image[0] / 255, atol=1e-7)


def test_broken_raster_files(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.rint(chest(64, 64) * 255).astype(np.uint8)).save(buffer, format="PNG")
    truncated = tmp_path / "y.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(RadllmError, match=r"y\.png: cannot decode image \(truncated\?\)"):
        read_grayscale(truncated)
    noise = tmp_path / "noise.jpeg"
    noise.write_bytes(b"\x00\x01\x02 definitely not a jpeg" * 4)
    with pytest.raises(RadllmError, match=r"noise\.jpeg: cannot decode image"):
        read_grayscale(noise)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(RadllmError, match=r"empty\.png: image file is empty"):
        read_grayscale(empty)
    with pytest.raises(RadllmError, match=r"missing\.png: no such image file"):
        read_grayscale(tmp_path / "missing.png")


def test_unsupported_type(tmp_path):
    gif = tmp_path / "z.gif"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(gif)
    with pytest.raises(RadllmError, match=r"z\.gif: unsupported image type '\.gif'; expected one of \.png"):
        read_grayscale(gif)
    assert not is_supported_image(gif)
    assert all(is_supported_image(f"a{suffix.upper()}") for suffix in SUPPORTED_SUFFIXES)



def test_wide_image_is_centred_between_black_bars():
    content = fit_to_square(np.ones((28, 80), np.float32), 32)  # -> 11 x 32 content
    assert content.shape == (32, 32) and content.dtype == np.float32
    assert np.all(content[:10] == 0) and np.all(content[21:] == 0)  # 10 above, 11 below
    np.testing.assert_allclose(content[10:21], 1.0, atol=1e-5)


def test_tall_image_is_centred_between_black_bars():
    content = fit_to_square(np.ones((64, 16), np.float32), 32)  # -> 32 x 8 content
    assert np.all(content[:, :12] == 0) and np.all(content[:, 20:] == 0)
    np.testing.assert_allclose(content[:, 12:20], 1.0, atol=1e-5)


@pytest.mark.parametrize("shape,size", [((60, 45), 32), ((300, 200), 64), ((10, 7), 32)])
def test_resize_matches_torch_antialiased_bicubic(shape, size):
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    square = fit_to_square(image, size)
    h, w = shape
    new_h, new_w = round(h * size / max(shape)), round(w * size / max(shape))
    top, left = (size - new_h) // 2, (size - new_w) // 2
    reference = F.interpolate(
        torch.from_numpy(image)[None, None], size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
    )[0, 0].clamp(0, 1)
    np.testing.assert_allclose(square[top : top + new_h, left : left + new_w], reference.numpy(), atol=1e-5)
    assert square.min() >= 0 and square.max() <= 1


def test_square_image_at_target_size_is_unchanged():
    image = np.random.default_rng(3).random((16, 16)).astype(np.float32)
    np.testing.assert_array_equal(fit_to_square(image, 16), image)


def test_load_image_is_the_fitted_grayscale_as_a_tensor(tmp_path):
    values = np.rint(chest(30, 50) * 65535).astype(np.uint16)
    path = tmp_path / "wide.png"
    Image.fromarray(values).save(path)
    tensor = load_image(path, 40)
    assert tensor.shape == (1, 40, 40) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    np.testing.assert_array_equal(tensor[0].numpy(), fit_to_square(values / 65535, 40))
    assert torch.all(tensor[0, :8] == 0)  # 30x50 -> 24x40 content, 8 black rows on top



def test_save_png_round_trips_through_pillow(tmp_path):
    image = torch.tensor([[[0.0, 0.2, 0.5, 1.0], [0.999, 0.001, -0.5, 2.0]]])  # [1, 2, 4]
    save_png(image, tmp_path / "out" / "a.png")
    with Image.open(tmp_path / "out" / "a.png") as png:
        assert png.mode == "L" and png.size == (4, 2)
        np.testing.assert_array_equal(np.asarray(png), [[0, 51, 128, 255], [255, 0, 0, 255]])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]  # no temp file left behind
    save_png(np.full((3, 2), 0.5, np.float32), tmp_path / "b.png")
    assert pillow_pixels(tmp_path / "b.png")[1].tolist() == [[128, 128]] * 3
    with pytest.raises(RadllmError, match=r"c\.jpg: save_png writes PNG files"):
        save_png(image, tmp_path / "c.jpg")
    with pytest.raises(ValueError, match="NaN"):
        save_png(torch.full((2, 2), float("nan")), tmp_path / "d.png")


def test_image_convert_writes_what_load_image_sees(tmp_path):
    anatomy = np.rint(chest(40, 30) * 4095).astype(np.int64)
    source = write(dicom_dataset(4095 - anatomy, bits_stored=12, photometric="MONOCHROME1"), tmp_path / "cxr.dcm")
    out = tmp_path / "cxr.png"
    parser = argparse.ArgumentParser()
    image_convert.configure(parser)
    assert image_convert.run(parser.parse_args([str(source), str(out), "--size", "48"])) == 0
    with Image.open(out) as png:
        assert png.mode == "L" and png.size == (48, 48)
        pixels = np.asarray(png)
    expected = np.rint(load_image(source, 48)[0].numpy() * 255)
    np.testing.assert_array_equal(pixels, expected)
    assert pixels[:, :5].max() == 0  # 40x30 -> 48x36: 6 black columns each side
    assert pixels[22, 6 + 10] < 60  # left lung centre (18, 8.4) scaled by 1.2, shifted by the bar
    with pytest.raises(SystemExit):
        parser.parse_args([str(source), str(out), "--size", "0"])


def test_image_convert_through_the_console_command(tmp_path, capsys):
    from radllm.cli import main

    Image.fromarray(np.full((5, 9), 200, np.uint8)).save(tmp_path / "in.png")
    assert main(["image-convert", str(tmp_path / "in.png"), str(tmp_path / "out.png")]) == 0
    assert pillow_pixels(tmp_path / "out.png")[1].shape == (256, 256)
    assert main(["image-convert", str(tmp_path / "nope.gif"), str(tmp_path / "o.png")]) == 2
    assert "nope.gif: no such image file" in capsys.readouterr().err


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming `width` x `height` (8-bit gray), with no pixel data."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


@pytest.mark.parametrize("slope, intercept", [("NaN", "0"), ("1", "NaN"), ("1e308", "0"), ("inf", "0")])
def test_dicom_with_non_finite_rescale_is_a_clear_error(tmp_path, slope, intercept):
    ds = dicom_dataset(np.rint(chest() * 4095).astype(np.int64), bits_stored=12)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    path = write(ds, tmp_path / "nan.dcm")
    with pytest.raises(RadllmError, match=r"nan\.dcm: the modality transform gives non-finite pixel values .*RescaleSlope"):
        read_grayscale(path)


def test_image_convert_refuses_a_nan_dicom_without_output(tmp_path, capsys):
    from radllm.cli import main

    ds = dicom_dataset(np.rint(chest() * 4095).astype(np.int64), bits_stored=12)
    ds.RescaleSlope, ds.RescaleIntercept = "NaN", "0"
    source = write(ds, tmp_path / "nan.dcm")
    assert main(["image-convert", str(source), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err
    assert "nan.dcm: the modality transform gives non-finite" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize("name", ["bomb.png", "bomb_just_over.png"])
def test_huge_png_header_is_refused_before_decoding(tmp_path, name):
    from radllm.imaging.formats import MAX_PIXELS

    side = 100_000 if name == "bomb.png" else int(MAX_PIXELS**0.5) + 1  # Pillow itself only warns here
    path = tmp_path / name
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(RadllmError, match=rf"{name.replace('.', '[.]')}: (header claims {side}×{side}|image is too large)"):
        read_grayscale(path)


def test_huge_dicom_header_is_refused_before_decoding(tmp_path):
    ds = dicom_dataset(np.zeros((2, 2)))
    ds.Rows = ds.Columns = 60_000  # PixelData stays 8 bytes: decoding would fail or allocate 7 GB
    with pytest.raises(RadllmError, match=r"big\.dcm: header claims 60000×60000 = 3,600,000,000 pixels, more than the 134,217,728"):
        read_grayscale(write(ds, tmp_path / "big.dcm"))
