"""Manifest images for VQ-GAN training, decoded once into a uint8 memory cache.

Decoding and resizing a PNG/DICOM costs far more than a training step of a small tokenizer, so
every image is decoded once (a 128-px image is 16 KiB as uint8: 2,000 images fit in 32 MiB) and
batches are sliced from the cache. Storing 8 bits costs at most half a grey level (1/510) per
pixel on resized images, far below any tokenizer's reconstruction error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from radllm.errors import RadllmError
from radllm.imaging import load_image
from radllm.imaging.png import to_uint8
from radllm.manifest import manifest_root, read_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageItem:
    """One image of a manifest study."""

    study_id: str
    path: Path
    view: str


def manifest_images(manifest: str | os.PathLike, split: str | None = None, views: Sequence[str] = ()) -> list[ImageItem]:
    """Images of the studies in `split` (None = all), keeping only `views` when given (case-insensitive).

    Raises:
        RadllmError: unreadable manifest.
    """
    try:
        studies = read_manifest(manifest)
    except (OSError, ValueError) as err:
        raise RadllmError(f"{manifest}: cannot read manifest ({err})") from err
    root = manifest_root(manifest)
    wanted = {v.upper() for v in views}
    items = []
    for study in studies:
        if split is not None and study.split != split:
            continue
        for ref, path in zip(study.images, study.image_paths(root)):
            if not wanted or ref.view.upper() in wanted:
                items.append(ImageItem(study.study_id, path, ref.view))
    return items


class ImageCache:
    """Images [N, 1, S, S] held as uint8; `batch(indices)` gives float32 in [0, 1]."""

    def __init__(self, items: list[ImageItem], pixels: torch.Tensor, skipped: int = 0) -> None:
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or pixels.shape[0] != len(items):
            raise ValueError(f"expected uint8 pixels [{len(items)}, 1, S, S], got {pixels.dtype} {list(pixels.shape)}")
        self.items = items
        self.pixels = pixels
        self.skipped = skipped  # unreadable images left out

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Float32 [len(indices), 1, S, S] in [0, 1]."""
        return self.pixels[torch.as_tensor(indices, dtype=torch.long)].float() / 255.0


def load_image_cache(items: list[ImageItem], size: int, progress: bool = True, what: str = "images") -> ImageCache:
    """Decode `items` at `size` px into an `ImageCache`; unreadable images are skipped, counted and logged.

    Raises:
        RadllmError: no image could be read.
    """
    kept, arrays, skipped = [], [], 0
    for item in tqdm(items, desc=f"decoding {what}", unit="img", disable=not progress, leave=False):
        try:
            image = load_image(item.path, size)  # [1, S, S] float in [0, 1]
        except (RadllmError, OSError) as err:
            skipped += 1
            log.warning("skipping unreadable image %s: %s", item.path, err)
            continue
        kept.append(item)
        arrays.append(torch.from_numpy(to_uint8(image)))
    if skipped:
        log.warning("%d of %d %s were unreadable and skipped", skipped, len(items), what)
    if not kept:
        raise RadllmError(f"none of the {len(items)} {what} could be read")
    return ImageCache(kept, torch.stack(arrays).unsqueeze(1), skipped)  # [N, 1, S, S] uint8


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """This rank's batches of one epoch: a (seed, epoch)-seeded permutation, split by rank.

    Every rank draws the same permutation, takes every `world_size`-th index from position
    `rank`, and gets the same number of full batches (the remainder is dropped), so data-parallel
    ranks always step together.

    Raises:
        RadllmError: fewer than one full batch per rank.
    """
    per_rank = n // world_size
    n_batches = per_rank // batch_size
    if n_batches == 0:
        raise RadllmError(f"{n} training images are fewer than one batch of {batch_size} per rank on {world_size} rank(s)")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)[rank::world_size][: n_batches * batch_size]
    return order.view(n_batches, batch_size).tolist()
