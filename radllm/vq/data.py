"""Manifest images for VQ-GAN training: streamed by DataLoader workers, or cached for evaluation.

Training streams (`ImageStream`): MIMIC-CXR has 377k images, hours of decoding and tens of GB if
every rank decoded them all before its first step, so each rank's DataLoader workers decode just
the images of its next batches while the model trains. The order is `epoch_batches` (a
(seed, epoch)-seeded permutation split by rank, the distributed sampler), and a batch is named by
its (epoch, index) position, so a resumed run continues with exactly the batch that came next.
An unreadable image is logged, left out of its batch and counted, never fatal.

Held-out images (a few dozen, shown at every evaluation) are decoded once into an `ImageCache`.

Both hand images over as uint8 (a 128-px image is 16 KiB: a quarter of float32 through the
workers' shared memory, and 2,000 cached images fit in 32 MiB). Storing 8 bits costs at most half
a grey level (1/510) per pixel on resized images, far below any tokenizer's reconstruction error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from radllm.errors import RadllmError
from radllm.imaging import load_image
from radllm.imaging.png import to_uint8
from radllm.manifest import manifest_root, read_manifest
from radllm.preemption import ignore_job_signals

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


def decode_uint8(item: ImageItem, size: int) -> torch.Tensor | None:
    """uint8 [1, size, size] pixels of `item`, or None (logged) when the file cannot be read."""
    try:
        image = load_image(item.path, size)  # [1, S, S] float in [0, 1]
    except (RadllmError, OSError) as err:
        log.warning("skipping unreadable image %s: %s", item.path, err)
        return None
    return torch.from_numpy(to_uint8(image)).view(1, size, size)


def load_image_cache(items: list[ImageItem], size: int, progress: bool = True, what: str = "images") -> ImageCache:
    """Decode `items` at `size` px into an `ImageCache`; unreadable images are skipped, counted and logged.

    Raises:
        RadllmError: no image could be read.
    """
    kept, arrays = [], []
    for item in tqdm(items, desc=f"decoding {what}", unit="img", disable=not progress, leave=False):
        pixels = decode_uint8(item, size)
        if pixels is not None:
            kept.append(item)
            arrays.append(pixels)
    skipped = len(items) - len(kept)
    if skipped:
        log.warning("%d of %d %s were unreadable and skipped", skipped, len(items), what)
    if not kept:
        raise RadllmError(f"none of the {len(items)} {what} could be read")
    return ImageCache(kept, torch.stack(arrays), skipped)  # [N, 1, S, S] uint8


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


class ImageDataset(Dataset):
    """Manifest images decoded on demand: item i is uint8 [1, size, size], or None when unreadable."""

    def __init__(self, items: Sequence[ImageItem], size: int) -> None:
        self.items, self.size = items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor | None:
        return decode_uint8(self.items[index], self.size)


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's `epoch_batches` of one epoch, from batch `start` on (set by `ImageStream`)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world_size = n, batch_size, seed, rank, world_size
        self.batches_per_epoch = len(epoch_batches(n, batch_size, seed, 0, rank, world_size))  # also checks n
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start

    def __iter__(self) -> Iterator[list[int]]:
        yield from epoch_batches(self.n, self.batch_size, self.seed, self.epoch, self.rank, self.world_size)[self.start :]


def readable(samples: list[torch.Tensor | None]) -> tuple[torch.Tensor, int]:
    """A batch of the readable images (uint8 [B, 1, S, S], B may be 0) and how many were not."""
    kept = [pixels for pixels in samples if pixels is not None]
    batch = torch.stack(kept) if kept else torch.empty(0, dtype=torch.uint8)
    return batch, len(samples) - len(kept)


class ImageStream:
    """One rank's endless training batches, decoded by `num_workers` DataLoader workers (0: in process).

    `batches(epoch, index)` yields `(next_position, pixels, unreadable)` from that position on:
    `next_position` is the (epoch, index) to resume from once this batch has been used, `pixels`
    uint8 [B, 1, S, S] with B < batch_size when images were unreadable (`unreadable` of them).
    """

    def __init__(self, items: Sequence[ImageItem], size: int, batch_size: int, seed: int, rank: int, world_size: int, num_workers: int) -> None:
        self.sampler = EpochBatchSampler(len(items), batch_size, seed, rank, world_size)
        self.loader = DataLoader(
            ImageDataset(items, size), batch_sampler=self.sampler, num_workers=num_workers, collate_fn=readable,
            persistent_workers=num_workers > 0, worker_init_fn=ignore_job_signals,  # alive until their rank has saved
        )

    def batches(self, epoch: int, index: int) -> Iterator[tuple[tuple[int, int], torch.Tensor, int]]:
        while True:
            if index >= self.sampler.batches_per_epoch:
                epoch, index = epoch + 1, 0
            self.sampler.epoch, self.sampler.start = epoch, index
            for pixels, unreadable in self.loader:
                index += 1
                yield (epoch, index), pixels, unreadable
