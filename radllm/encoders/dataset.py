"""Labelled images for classifier training: manifest studies -> uint8 image tensor + label matrix.

Images are decoded once and kept in memory as uint8 at the training size (S*S bytes each), so
epochs never re-decode PNG/JPEG/DICOM files. Each selected view of a study is one example that
carries the study's labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from radllm.errors import RadllmError
from radllm.imaging import load_image
from radllm.labels import OBSERVATIONS
from radllm.manifest import Study

log = logging.getLogger(__name__)


@dataclass
class LabelledImages:
    """N examples over L labels; `mask` is 1 where the target contributes (certain, non-blank)."""

    images: torch.Tensor  # uint8 [N, 1, S, S]
    targets: torch.Tensor  # float32 [N, L] in {0, 1}
    mask: torch.Tensor  # float32 [N, L] in {0, 1}; 0 where the label policy masks the label out
    study_ids: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: reason" for images that failed to load

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images as float in [0, 1], targets and mask for the examples in `index`."""
        return self.images[index].float().div_(255.0), self.targets[index], self.mask[index]


@dataclass(frozen=True)
class LabelPolicy:
    """How uncertain (-1) and blank (None) manifest labels become targets; see `train_config`."""

    uncertain: str = "ignore"  # ignore | ones | zeros
    blank: str = "ignore"  # ignore | zeros

    def target(self, value: int | None) -> float | None:
        """The target for one manifest label, or None when it is masked out."""
        if value is None:
            return None if self.blank == "ignore" else 0.0
        if value == -1:
            return {"ignore": None, "ones": 1.0, "zeros": 0.0}[self.uncertain]
        return float(value)


def select_observations(
    studies: Sequence[Study], requested: Sequence[str], policy: LabelPolicy
) -> tuple[list[str], dict[str, str]]:
    """Observations to train on and why the others were left out.

    With `requested` empty, every observation with at least one positive and one negative
    training target is used (one class only cannot be learned or thresholded). A requested
    observation lacking a class is an error.
    """
    chosen, excluded = [], {}
    for name in requested or OBSERVATIONS:
        values = [policy.target(s.labels.get(name)) for s in studies]
        n_pos, n_neg = values.count(1.0), values.count(0.0)
        if n_pos and n_neg:
            chosen.append(name)
            continue
        reason = f"{n_pos} positive and {n_neg} negative training labels"
        if requested:
            raise RadllmError(f"data.observations: {name!r} has {reason}; need both classes to train on it")
        excluded[name] = reason
    if not chosen:
        raise RadllmError(f"no observation has both positive and negative training labels ({excluded})")
    return chosen, excluded


def load_labelled_images(
    studies: Sequence[Study],
    root: str | Path,
    label_names: Sequence[str],
    size: int,
    views: Sequence[str],
    policy: LabelPolicy,
    progress: bool = True,
    desc: str = "images",
) -> LabelledImages:
    """Decode every image of `studies` whose view is in `views`; unreadable files are skipped and counted."""
    wanted = {v.upper() for v in views}
    images, targets, masks, study_ids, skipped = [], [], [], [], []
    refs = [(s, path) for s in studies for ref, path in zip(s.images, s.image_paths(root)) if ref.view.upper() in wanted]
    for study, path in tqdm(refs, desc=f"loading {desc}", disable=not progress, unit="img"):
        try:
            pixels = load_image(path, size)  # [1, S, S] in [0, 1]
        except (RadllmError, OSError, ValueError) as err:
            skipped.append(f"{path}: {err}")
            continue
        images.append(pixels.mul(255.0).round_().clamp_(0, 255).to(torch.uint8))
        row = [policy.target(study.labels.get(name)) for name in label_names]
        targets.append([0.0 if v is None else v for v in row])
        masks.append([0.0 if v is None else 1.0 for v in row])
        study_ids.append(study.study_id)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s), first: %s", desc, len(skipped), skipped[0])
    n_labels = len(label_names)
    return LabelledImages(
        images=torch.stack(images) if images else torch.zeros(0, 1, size, size, dtype=torch.uint8),
        targets=torch.tensor(targets, dtype=torch.float32).reshape(-1, n_labels),
        mask=torch.tensor(masks, dtype=torch.float32).reshape(-1, n_labels),
        study_ids=study_ids,
        skipped=skipped,
    )
