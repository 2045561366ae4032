"""Clinical agreement: do two sets of images show the same findings to a CXR classifier?

Used to judge VQ-GAN reconstructions and generated images clinically rather than pixel-wise: a
reconstruction that keeps every finding the classifier sees in the original scores 1.0 even if
its texture differs.
"""

from __future__ import annotations

import torch

from radllm.encoders.encoder import CXREncoder


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
