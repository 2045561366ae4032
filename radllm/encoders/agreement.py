"""Clinical agreement: do two sets of images show the same findings to a CXR classifier?

Used to judge VQ-GAN reconstructions and generated images clinically rather than pixel-wise: a
reconstruction that keeps every finding the classifier sees in the original scores 1.0 even if
its texture differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from radllm.encoders.encoder import CXREncoder
from radllm.encoders.metrics import binary_auroc


@torch.no_grad()
def clinical_agreement(
    encoder: CXREncoder, originals: torch.Tensor, reconstructions: torch.Tensor, batch_size: int = 64
) -> float:
    """Fraction of (image, observation) pairs whose binary findings agree.

    Args:
        encoder: gives findings at its stored thresholds over its `label_names`.
        originals, reconstructions: [N, 1, H, W] in [0, 1], paired by index (sizes may differ
            between the two sets; the encoder resizes).
        batch_size: images per forward pass.

    Returns:
        agreeing pairs / (N * number of labels).
    """
    if originals.shape[0] != reconstructions.shape[0]:
        raise ValueError(f"need paired images: {originals.shape[0]} originals vs {reconstructions.shape[0]} reconstructions")
    if originals.shape[0] == 0:
        raise ValueError("clinical agreement needs at least one image pair")
    agreeing = 0
    for start in range(0, originals.shape[0], batch_size):
        a = encoder.predict_findings(originals[start : start + batch_size])  # [b, L]
        b = encoder.predict_findings(reconstructions[start : start + batch_size])
        agreeing += int((a == b).sum())
    return agreeing / (originals.shape[0] * len(encoder.label_names))


@torch.no_grad()
def finding_aurocs(
    encoder: CXREncoder,
    originals: torch.Tensor,
    reconstructions: torch.Tensor,
    targets: Sequence[Sequence[float | None]],
    batch_size: int = 64,
) -> dict[str, dict[str, float | None]]:
    """Per finding, the classifier's AUROC against the labels on originals and on reconstructions.

    Why: `clinical_agreement` averages over findings and images, so a tokenizer that loses one
    rare, thin finding (a tube, a line) everywhere still agrees on ~99 % of pairs. Read per finding,
    AUROC on the originals is what the classifier can see at this size and on the reconstructions
    what the codes still carry of it: a gap names the finding the tokenizer drops.

    Args:
        targets: per image, one target per `encoder.label_names` (1.0, 0.0, or None = unknown,
            left out of that finding's AUROC).

    Returns:
        {"original": {label: auroc}, "reconstruction": {label: auroc}}; None where the known
        targets of a finding lack a class.
    """
    if not originals.shape[0] == reconstructions.shape[0] == len(targets):
        raise ValueError(f"need one target row per image pair: {originals.shape[0]} originals, {reconstructions.shape[0]} reconstructions, {len(targets)} target rows")
    labels = np.array([[np.nan if t is None else t for t in row] for row in targets], dtype=np.float64)  # [N, L]
    if labels.shape[1:] != (len(encoder.label_names),):
        raise ValueError(f"targets have {labels.shape[1:]} columns; the encoder reads {len(encoder.label_names)} findings")
    result: dict[str, dict[str, float | None]] = {}
    for name, images in (("original", originals), ("reconstruction", reconstructions)):
        probs = torch.cat([encoder.predict(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]).cpu().numpy()
        known = ~np.isnan(labels)
        result[name] = {
            label: binary_auroc(probs[known[:, j], j], labels[known[:, j], j]) for j, label in enumerate(encoder.label_names)
        }
    return result
