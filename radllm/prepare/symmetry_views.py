"""Frontal-vs-lateral view inference from left-right mirror symmetry, for data without view tags.

Open-i's IU X-Ray release has no view field: the XML lists `parentImage`s in an order that is
usually, but not always, frontal first (some studies list the lateral as figure F1), and the
captions ("Xray Chest PA and Lateral") describe the exam, not the image. What does hold physically
is that a frontal (PA/AP) radiograph is close to mirror-symmetric about the spine, while a
lateral one is not (spine at one edge, sternum at the other). The score is the best Pearson
correlation between a downsampled image and its mirror image over mirror axes near the centre.

Policy (`assign_views`):

* a study with two or more images: the most symmetric image is FRONTAL;
* the threshold `(median frontal score + median lateral score) / 2` is calibrated on the
  two-image studies of the same dataset (almost all are the standard PA + lateral exam), so no
  constant is guessed;
* every other image is FRONTAL when its score reaches that threshold, else LATERAL (this covers
  single-image studies and the extra images of three-image studies);
* without any two-image study there is no threshold and such images stay UNKNOWN.

An authoritative per-image table (the Kaggle "indiana_projections.csv") overrides all of this in
`radllm.prepare.iu_xray`.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from radllm.imaging.formats import check_pixel_count

FRONTAL = "FRONTAL"
LATERAL = "LATERAL"
UNKNOWN = "UNKNOWN"

_SIDE = 128  # longest side after block-mean downsampling: coarse anatomy is all the score needs
_MAX_MIRROR_SHIFT = 0.125  # fraction of the width; the axis moves half as far
_NATIVE_MODES = {"L", "I", "I;16", "I;16L", "I;16B", "F"}


def load_gray(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8- or 16-bit grayscale (or colour) image to float32 [H, W], keeping its depth."""
    with Image.open(path) as image:
        check_pixel_count(path, *image.size)
        if image.mode not in _NATIVE_MODES:
            image = image.convert("L")
        return np.asarray(image, dtype=np.float32)


def _block_mean(pixels: np.ndarray, side: int) -> np.ndarray:
    """Downsample [H, W] by an integer factor so the longest side is at most `side`."""
    factor = max(1, -(-max(pixels.shape) // side))
    h, w = (pixels.shape[0] // factor) * factor, (pixels.shape[1] // factor) * factor
    return pixels[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def mirror_symmetry(pixels: np.ndarray) -> float:
    """Best correlation in [-1, 1] between an image [H, W] and its left-right mirror.

    The mirror is shifted by up to 1/8 of the width in each direction, which moves the mirror
    axis up to 1/16 of the width off centre (patients are rarely centred exactly); for each
    shift only the overlapping columns are compared. A constant image scores 0.
    """
    small = _block_mean(np.asarray(pixels, dtype=np.float64), _SIDE)  # [h, w], max(h, w) <= 128
    mirrored = small[:, ::-1]
    width = small.shape[1]
    best = -1.0
    for shift in range(-int(width * _MAX_MIRROR_SHIFT), int(width * _MAX_MIRROR_SHIFT) + 1):
        a = small[:, max(shift, 0) : width + min(shift, 0)]
        b = mirrored[:, max(-shift, 0) : width + min(-shift, 0)]
        a, b = a - a.mean(), b - b.mean()
        denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
        best = max(best, float((a * b).sum()) / denom if denom > 0 else 0.0)
    return best


@dataclass
class ViewAssignment:
    """Views per study (image order as given) and the threshold used for the other images."""

    views: dict[str, list[str]]
    threshold: float | None


def assign_views(scores: Mapping[str, Sequence[float]]) -> ViewAssignment:
    """Apply the module's policy to per-study symmetry scores (one score per image, in order)."""
    frontal_scores, lateral_scores = [], []
    for study_scores in scores.values():
        if len(study_scores) == 2:
            frontal_scores.append(max(study_scores))
            lateral_scores.append(min(study_scores))
    threshold = None
    if frontal_scores:
        threshold = (statistics.median(frontal_scores) + statistics.median(lateral_scores)) / 2
    views: dict[str, list[str]] = {}
    for study_id, study_scores in scores.items():
        top = int(np.argmax(study_scores)) if len(study_scores) > 1 else -1
        study_views = []
        for index, score in enumerate(study_scores):
            if index == top:
                study_views.append(FRONTAL)
            elif threshold is None:
                study_views.append(UNKNOWN)
            else:
                study_views.append(FRONTAL if score >= threshold else LATERAL)
        views[study_id] = study_views
    return ViewAssignment(views=views, threshold=threshold)
