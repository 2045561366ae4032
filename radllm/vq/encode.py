"""Batched image tokenization: images in, code grids out (what `radllm vq-encode` writes)."""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from radllm import atomic
from radllm.errors import RadllmError
from radllm.imaging import is_supported_image, load_image
from radllm.vq.checkpoint import load_vq
from radllm.vq.data import ImageItem, manifest_images
from radllm.vq.tokenizer import ImageTokenizer

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_images(vq: ImageTokenizer, images: Iterable[Tensor], batch_size: int = 64) -> Iterator[Tensor]:
    """Codes of each image, in input order, computed `batch_size` images per forward pass.

    Args:
        vq: the tokenizer; it is put in eval mode (training mode would update usage statistics).
        images: [1, H, W] tensors in [0, 1] (e.g. from `load_image` at `vq.image_size`);
            consumed lazily, so a long stream is never held in memory at once.
        batch_size: images per forward pass.

    Yields:
        int64 [h, w] code grid per image, on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    vq.eval()
    device = vq.device
    pending: list[Tensor] = []

    def flush() -> Iterator[Tensor]:
        codes = vq.encode(torch.stack(pending).to(device))  # [b, 1, H, W] -> [b, h, w]
        pending.clear()
        yield from codes.cpu()

    for image in images:
        pending.append(image)
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


def image_files(paths: Sequence[str | os.PathLike]) -> list[ImageItem]:
    """Image items for files and folders (folders searched recursively, sorted); study_id = file stem.

    Raises:
        RadllmError: a path that does not exist, or no supported image at all.
    """
    items = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_supported_image(p))
        elif path.is_file():
            files = [path]
        else:
            raise RadllmError(f"{path}: no such image file or folder")
        items.extend(ImageItem(study_id=f.stem, path=f, view="UNKNOWN") for f in files)
    if not items:
        raise RadllmError(f"no supported images found in {[str(p) for p in paths]}")
    return items


def encode_items(
    vq: ImageTokenizer, items: Sequence[ImageItem], batch_size: int = 64, progress: bool = False, desc: str = "vq-encode"
) -> Iterator[tuple[ImageItem, Tensor]]:
    """(item, int64 [h, w] codes) for each readable item, in order, decoded at `vq.image_size`.

    The tokenization path itself (`load_image` then `encode_images`), so codes equal what the
    LLM's shards hold. Unreadable images are skipped and logged; the caller counts them as
    ``len(items)`` minus the pairs yielded.
    """
    readable: deque[ImageItem] = deque()  # decoded but not yet yielded, in order

    def decoded() -> Iterator[Tensor]:
        for item in tqdm(items, desc=desc, unit="img", disable=not progress):
            try:
                tensor = load_image(item.path, vq.image_size)  # [1, S, S]
            except (RadllmError, OSError) as err:
                log.warning("skipping unreadable image %s: %s", item.path, err)
                continue
            readable.append(item)
            yield tensor

    for codes in encode_images(vq, decoded(), batch_size):
        yield readable.popleft(), codes


def encode_to_jsonl(
    vq_dir: str | os.PathLike,
    out: str | os.PathLike,
    manifest: str | os.PathLike | None = None,
    images: Sequence[str | os.PathLike] | None = None,
    split: str | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, int]:
    """Tokenize a manifest's or a list of files' images into JSONL, one object per image.

    Each line: study_id, path, view, grid [h, w], codes (row-major flat list of h*w ints).
    Unreadable images are skipped, logged and counted; the file appears atomically.

    Returns:
        {"encoded": n, "skipped": m}
    """
    if (manifest is None) == (images is None):
        raise RadllmError("give exactly one of a manifest or image paths to encode")
    items = manifest_images(manifest, split) if manifest is not None else image_files(images or [])
    vq = load_vq(vq_dir, device=device)
    encoded = 0
    with atomic.atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for item, codes in encode_items(vq, items, batch_size, progress):
            line = {"study_id": item.study_id, "path": str(item.path), "view": item.view, "grid": list(codes.shape)}
            fh.write(json.dumps(line | {"codes": codes.flatten().tolist()}) + "\n")
            encoded += 1
    skipped = len(items) - encoded
    if skipped:
        log.warning("%d of %d images were unreadable and skipped", skipped, len(items))
    return {"encoded": encoded, "skipped": skipped}
