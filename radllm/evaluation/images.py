"""Image metrics (the ``image/`` keys): reconstructions, FID and clinical agreement of generated CXRs.

* Reconstructions (``task: reconstruction``): PSNR and SSIM against the study's reference image
  (`radllm.vq.metrics`), loaded with `radllm.imaging.load_image` at the reconstruction's size;
  with a classifier, also `radllm.encoders.clinical_agreement` of the two sets.
* Generated images (``task: image``): FID between their features and those of the reference
  images of the same studies, with features from a CXR encoder loaded from a local file (the
  spatial mean of its deepest feature map; nothing downloaded), and the clinical agreement
  between a CXR classifier's findings on each generated image and the findings requested (the
  reference labels, or the labeler on the prompt), over the classifier's observations.

FID here is computed with a chest X-ray encoder, not Inception-v3: values are comparable between
runs with the same extractor only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch

from radllm.encoders import CXREncoder, clinical_agreement
from radllm.errors import RadllmError
from radllm.evaluation.clinical import TN, TP, averaged_scores, confusion_tables, pair_counts
from radllm.evaluation.inputs import Reference
from radllm.imaging import load_image, read_grayscale
from radllm.labels import Labels
from radllm.vq.metrics import psnr, ssim


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), the Fréchet distance of two Gaussians.

    A singular product (fewer samples than feature dimensions) gets `eps` on the diagonals, and
    the tiny imaginary part sqrtm can leave from rounding is dropped, as pytorch-fid does.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched Gaussian statistics: {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}")
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(mu1.size) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, as pytorch-fid) of features [N, D], N >= 2."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors [N, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


@torch.no_grad()
def encoder_features(encoder: CXREncoder, images: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """[N, C] spatial means of the encoder's deepest feature map for images [N, 1, H, W]."""
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        deepest = encoder.features(images[start : start + batch_size])[-1]  # [b, C, h, w]
        chunks.append(deepest.float().mean(dim=(2, 3)).cpu().numpy())
    return np.concatenate(chunks).astype(np.float64)


def _load(path: str, size: int) -> torch.Tensor:
    return load_image(path, size).unsqueeze(0)  # [1, 1, size, size]


def _native_size(path: str) -> int:
    image = read_grayscale(path)
    if image.shape[0] != image.shape[1]:
        raise RadllmError(f"{path}: evaluated images must be square, got {image.shape[1]}x{image.shape[0]}")
    return int(image.shape[0])


def _reference_image(ref: Reference, study_id: str) -> str:
    if not ref.images:
        raise RadllmError(f"study {study_id!r}: the references give no image to compare with")
    return str(ref.images[0])


def reconstruction_metrics(
    records: Sequence[Mapping[str, Any]], references: Mapping[str, Reference], classifier: CXREncoder | None
) -> dict[str, Any]:
    """``recon_*`` keys: mean PSNR (dB) and SSIM, and clinical agreement when a classifier is given."""
    originals, reconstructions = [], []
    for record in records:
        size = _native_size(record["image"])
        reconstructions.append(_load(record["image"], size))
        originals.append(_load(_reference_image(references[record["study_id"]], record["study_id"]), size))
    psnrs = [float(psnr(r, o)) for r, o in zip(reconstructions, originals)]
    ssims = [float(ssim(r, o)) for r, o in zip(reconstructions, originals)]
    out: dict[str, Any] = {"recon_n": len(records), "recon_psnr": float(np.mean(psnrs)), "recon_ssim": float(np.mean(ssims))}
    if classifier is not None:
        size = classifier.input_size
        out["recon_clinical_agreement"] = clinical_agreement(
            classifier,
            torch.cat([_load(_reference_image(references[r["study_id"]], r["study_id"]), size) for r in records]),
            torch.cat([_load(r["image"], size) for r in records]),
        )
    return {f"image/{k}": v for k, v in out.items()}


@dataclass
class ImageScores:
    """The ``image/`` keys of generated images, and per study the counts their bootstrap resamples."""

    metrics: dict[str, Any]
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # study id -> int [findings, 4] (tp, fp, fn, tn)


@torch.no_grad()
def classifier_findings(records: Sequence[Mapping[str, Any]], classifier: CXREncoder, batch_size: int = 32) -> list[Labels]:
    """The classifier's 1/0 findings on each record's image, over its own observations."""
    size, names, found = classifier.input_size, classifier.label_names, []
    for start in range(0, len(records), batch_size):
        batch = torch.cat([_load(r["image"], size) for r in records[start : start + batch_size]])
        found += classifier.predict_findings(batch).cpu().tolist()
    return [dict(zip(names, row)) for row in found]


def requested_finding_scores(
    study_ids: Sequence[str], found: Sequence[Labels], requested: Sequence[Labels], names: Sequence[str], policy: str
) -> ImageScores:
    """``gen_clinical_agreement`` and ``gen_clinical_f1_micro`` of the findings `found` in each image
    against those `requested` of it, over the observations `names`.

    Agreement counts every (image, observation) pair, so with most findings absent an image that
    shows nothing scores high (see ``image/baseline_absent``); the F1 counts only requested and
    found findings and is the headline.
    """
    counts = pair_counts(found, requested, names, policy)  # [n, findings, 4]
    totals = counts.sum(axis=(0, 1))
    pairs = int(totals.sum())
    metrics = {
        "gen_clinical_agreement": float(totals[TP] + totals[TN]) / pairs if pairs else None,
        "gen_clinical_f1_micro": averaged_scores(confusion_tables(found, list(requested), names, policy))["f1_micro"],
    }
    return ImageScores({f"image/{k}": v for k, v in metrics.items()}, dict(zip(study_ids, counts)))


def absent_image_scores(study_ids: Sequence[str], requested: Sequence[Labels], names: Sequence[str], policy: str) -> ImageScores:
    """What an image in which the classifier finds nothing scores (``image/baseline_absent/...``)."""
    return requested_finding_scores(study_ids, [dict.fromkeys(names, 0) for _ in study_ids], requested, names, policy)


@torch.no_grad()
def score_generated_images(
    records: Sequence[Mapping[str, Any]],
    references: Mapping[str, Reference],
    requested: Sequence[Labels],
    policy: str,
    feature_extractor: CXREncoder | None,
    classifier: CXREncoder | None,
) -> ImageScores:
    """``gen_*`` keys and ``fid`` for generated images; `requested[i]` are the findings asked of
    `records[i]`. Without an extractor or classifier the matching keys are left out and
    ``*_skipped`` says why."""
    out: dict[str, Any] = {"gen_n": len(records)}
    if feature_extractor is None:
        out["fid_skipped"] = "no --feature-extractor or --classifier given"
    elif len(records) < 2:
        out["fid_skipped"] = "FID needs at least 2 generated images"
    else:
        size = feature_extractor.input_size
        generated = torch.cat([_load(r["image"], size) for r in records])
        real = torch.cat([_load(_reference_image(references[r["study_id"]], r["study_id"]), size) for r in records])
        out["fid"] = frechet_distance(
            *gaussian_statistics(encoder_features(feature_extractor, generated)),
            *gaussian_statistics(encoder_features(feature_extractor, real)),
        )
    if classifier is None:
        out["gen_clinical_agreement_skipped"] = "no --classifier given"
        return ImageScores({f"image/{k}": v for k, v in out.items()})
    scores = requested_finding_scores([r["study_id"] for r in records], classifier_findings(records, classifier), requested,
                                      classifier.label_names, policy)
    scores.metrics = {**{f"image/{k}": v for k, v in out.items()}, **scores.metrics}
    return scores
