"""The image side of ``baseline_normal``: every study gets the same unremarkable radiograph.

The image is the frontal view of the first study, in manifest order, of the reference split whose
labels say No Finding = 1 and Support Devices neither present nor uncertain; it is copied next to
the record file, and records name it relative to that file (as `radllm generate` writes images).
Scored as ``image/baseline_normal/...``, it is what a generator that ignores its prompt and draws
one typical normal chest reaches: FID near that of real images says little about a model whose
images do not also change with the findings asked for (the clinical agreement, with a classifier).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.errors import RadllmError
from radllm.manifest import Study, iter_manifest, manifest_root

#: Stem of the record file (``baseline_normal_images.jsonl``), scored under the name baseline_normal.
NORMAL_IMAGES = "baseline_normal_images"
NORMAL_IMAGE_STEM = "baseline_normal_image"


def is_unremarkable(study: Study) -> bool:
    """No Finding = 1 and no (or no uncertain) support device."""
    return study.labels.get("No Finding") == 1 and study.labels.get("Support Devices") not in (1, -1)


def normal_source(manifest: str | os.PathLike, split: str) -> tuple[Study, Path]:
    """The first unremarkable study of `split` in `manifest` that has a frontal image, and that image's path.

    Raises:
        RadllmError: no such study, or its image file is missing.
    """
    root = manifest_root(manifest)
    for study in iter_manifest(manifest):
        if study.split != split or not is_unremarkable(study):
            continue
        frontal = [path for ref, path in zip(study.images, study.image_paths(root)) if ref.is_frontal]
        if not frontal:
            continue
        if not frontal[0].is_file():
            raise RadllmError(f"{manifest}: the normal image {frontal[0]} of study {study.study_id!r} does not exist")
        return study, frontal[0]
    raise RadllmError(
        f"{manifest}: no {split!r} study with No Finding = 1, no Support Devices and a frontal image to use as the "
        "always-normal image; pass a manifest whose reference split has one"
    )


def write_normal_image(source: Path, out_dir: str | os.PathLike) -> Path:
    """Copy `source` into `out_dir` as ``baseline_normal_image<suffix>``; returns the copy's path."""
    target = Path(out_dir) / f"{NORMAL_IMAGE_STEM}{source.suffix.lower()}"
    atomic.write_bytes(target, source.read_bytes())
    return target


def normal_image_predictions(study_ids: list[str], image_name: str, baseline: str) -> list[dict[str, Any]]:
    """One ``image`` record per study, all naming `image_name` (relative to the record file)."""
    return [{"task": "image", "study_id": sid, "image": image_name, "baseline": baseline} for sid in study_ids]
