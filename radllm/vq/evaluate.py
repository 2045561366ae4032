"""Held-out evaluation of a VQ directory: pixel, edge, codebook and clinical metrics (`radllm vq-eval`).

Reconstructions go through the tokenization path itself (`encode` then `decode_codes`, clamped to
[0, 1]), so the numbers describe exactly what the LLM's image tokens can express.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from radllm import atomic
from radllm.errors import RadllmError
from radllm.imaging import save_png
from radllm.vq.checkpoint import load_vq
from radllm.vq.data import load_image_cache, manifest_images
from radllm.vq.metrics import code_perplexity, codebook_usage, gradient_magnitude_error, psnr, ssim
from radllm.vq.model import VQModel
from radllm.vq.training import GRID_IMAGES, reconstruction_grid

NO_CLASSIFIER_NOTE = "clinical_agreement needs a CXR classifier (--classifier ENCODER_DIR); none was given"


@torch.no_grad()
def reconstruct(vq: VQModel, images: torch.Tensor, batch_size: int = 64, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, h, w] and reconstructions [N, 1, H, W] in [0, 1] of `images` [N, 1, H, W] (CPU outputs)."""
    vq.eval()
    device = next(vq.parameters()).device
    codes, recons = [], []
    for start in tqdm(range(0, images.shape[0], batch_size), desc="reconstructing", unit="batch", disable=not progress, leave=False):
        c = vq.encode(images[start : start + batch_size].to(device))  # [b, h, w]
        codes.append(c.cpu())
        recons.append(vq.decode_codes(c).float().cpu())  # [b, 1, H, W]
    return torch.cat(codes), torch.cat(recons)


def evaluate_vq(
    vq_dir: str | os.PathLike,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    classifier: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Write `out_dir/metrics.json` and `out_dir/reconstructions.png`; return the metrics.

    Metrics: psnr, ssim, gradient_magnitude_error (means over images), codebook_usage (fraction
    of the K codes used over the whole set), perplexity, clinical_agreement (null with a note
    when no classifier is given), n_images, split.

    Raises:
        RadllmError: unreadable VQ directory, manifest or classifier; no images in `split`.
    """
    vq = load_vq(vq_dir, device=device)
    items = manifest_images(manifest, split)[:limit]
    if not items:
        raise RadllmError(f"{manifest}: no images in split {split!r}")
    data = load_image_cache(items, vq.config.image_size, progress, f"{split} images")
    originals = data.batch(range(len(data)))  # [N, 1, S, S]
    codes, recons = reconstruct(vq, originals, batch_size, progress)
    k = vq.config.codebook_size
    metrics: dict[str, Any] = {
        "psnr": float(psnr(originals, recons).mean()),
        "ssim": float(ssim(originals, recons).mean()),
        "gradient_magnitude_error": float(gradient_magnitude_error(originals, recons).mean()),
        "codebook_usage": codebook_usage(codes, k),
        "perplexity": code_perplexity(codes, k),
        "clinical_agreement": None,
        "n_images": len(data),
        "n_skipped": data.skipped,
        "split": split,
        "grid": list(codes.shape[1:]),
        "vq_dir": str(vq_dir),
    }
    if classifier is not None:
        from radllm.encoders import clinical_agreement, load_cxr_encoder

        encoder = load_cxr_encoder(classifier, device=device).freeze()
        metrics["clinical_agreement"] = clinical_agreement(encoder, originals.to(device), recons.to(device), batch_size)
        metrics["classifier"] = str(classifier)
    else:
        metrics["note"] = NO_CLASSIFIER_NOTE
    out = Path(out_dir)
    atomic.write_json(out / "metrics.json", metrics)
    save_png(reconstruction_grid(originals[:GRID_IMAGES], recons[:GRID_IMAGES]), out / "reconstructions.png")
    return metrics
