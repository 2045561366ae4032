"""`radllm image-convert`: write exactly what the pipeline sees for one image as an 8-bit PNG.

    radllm image-convert chest.dcm chest.png --size 256

Useful to check windowing, MONOCHROME1 inversion and padding of a new data source before
tokenizing it: the PNG is `load_image(IN, size)` quantised to 8 bits.
"""

from __future__ import annotations

import argparse

from radllm.imaging import SUPPORTED_SUFFIXES, load_image, save_png

NAME = "image-convert"
HELP = "convert a PNG/JPEG/DICOM image to the 8-bit square PNG the pipeline sees"


def positive_int(text: str) -> int:
    """argparse type for --size: a clear usage error instead of a traceback for 0 or negatives."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the input, output and size arguments."""
    parser.add_argument("input", help=f"image file ({', '.join(SUPPORTED_SUFFIXES)}, or DICOM without suffix)")
    parser.add_argument("output", help="PNG file to write (replaced atomically)")
    parser.add_argument(
        "--size", type=positive_int, default=256, help="side of the square output in pixels (default: 256)"
    )


def run(args: argparse.Namespace) -> int:
    """Load, fit to the square and save."""
    save_png(load_image(args.input, args.size), args.output)
    print(f"wrote {args.output} ({args.size}x{args.size})")
    return 0
