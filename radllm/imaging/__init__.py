"""Image ingest: PNG, JPEG and DICOM files to the one float tensor the whole pipeline uses.

    load_image(path, size)  -> torch.float32 [1, size, size] in [0, 1]; 0 = black (air), 1 = white (bone)
    read_grayscale(path)    -> np.float32 [H, W] in [0, 1], native resolution
    fit_to_square(a, size)  -> np.float32 [size, size]: longer side resized to `size`, centred on black
    save_png(image, path)   -> 8-bit grayscale PNG, written atomically

VQ-GAN training, tokenization, classifiers and generation all go through `load_image`, so every
consumer sees the same pixels; `radllm image-convert` writes exactly those pixels to a PNG.
"""

from radllm.imaging.formats import SUPPORTED_SUFFIXES, is_supported_image
from radllm.imaging.geometry import fit_to_square
from radllm.imaging.ingest import load_image, read_grayscale
from radllm.imaging.png import save_png

__all__ = [
    "SUPPORTED_SUFFIXES",
    "fit_to_square",
    "is_supported_image",
    "load_image",
    "read_grayscale",
    "save_png",
]
