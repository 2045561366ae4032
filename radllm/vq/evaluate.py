"""Held-out evaluation of a VQ directory: pixel, edge, codebook and clinical metrics (`radllm vq-eval`).

Reconstructions go through the tokenization path itself (`encode` then `decode_codes`, clamped to
[0, 1]), so the numbers describe exactly what the LLM's image tokens can express. The code probe
(`radllm.vq.probe`) adds what a reader of the codes can tell: a small classifier trained on the
train split's codes, scored on the evaluated split's codes (the ``probe/`` keys).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from radllm import atomic
from radllm.errors import RadllmError
from radllm.imaging import save_png
from radllm.labels import Labels, slug
from radllm.manifest import Study, manifest_root, read_manifest
from radllm.vq.checkpoint import load_vq
from radllm.vq.data import ImageItem, load_image_cache, manifest_images
from radllm.vq.encode import encode_items
from radllm.vq.metrics import code_perplexity, codebook_usage, gradient_magnitude_error, psnr, ssim
from radllm.vq.probe import PROBE_LABEL_POLICY, ProbeConfig, code_probe
from radllm.vq.tokenizer import ImageTokenizer
from radllm.vq.training import GRID_IMAGES, reconstruction_grid

if TYPE_CHECKING:
    from radllm.encoders import CXREncoder

NO_CLASSIFIER_NOTE = "clinical_agreement needs a CXR classifier (--classifier ENCODER_DIR); none was given"
PROBE_TRAIN_SPLIT = "train"


@torch.no_grad()
def reconstruct(vq: ImageTokenizer, images: torch.Tensor, batch_size: int = 64, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, h, w] and reconstructions [N, 1, H, W] in [0, 1] of `images` [N, 1, H, W] (CPU outputs)."""
    vq.eval()
    device = vq.device
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
    probe: bool | None = None,
    probe_config: ProbeConfig | None = None,
    probe_train_limit: int | None = None,
) -> dict[str, Any]:
    """Write `out_dir/metrics.json` and `out_dir/reconstructions.png`; return the metrics.

    Metrics: psnr, ssim, gradient_magnitude_error (means over images), codebook_usage (fraction
    of the K codes used over the whole set), perplexity, clinical_agreement (null with a note
    when no classifier is given), n_images, split; with a classifier and labels, the
    ``clinical/`` keys of `finding_auroc_metrics`; and the ``probe/`` keys of `probe_metrics`.

    Args:
        probe: run the code probe; None runs it when the manifest's train studies carry labels.
        probe_config: size and budget of the probe (`ProbeConfig()` when None).
        probe_train_limit: train the probe on at most this many train studies (manifest order).

    Raises:
        RadllmError: unreadable VQ directory, manifest or classifier; no images in `split`; a
            requested probe without labelled, readable frontal train and eval images.
    """
    vq = load_vq(vq_dir, device=device)
    items = manifest_images(manifest, split)[:limit]
    if not items:
        raise RadllmError(f"{manifest}: no images in split {split!r}")
    data = load_image_cache(items, vq.image_size, progress, f"{split} images")
    originals = data.batch(range(len(data)))  # [N, 1, S, S]
    codes, recons = reconstruct(vq, originals, batch_size, progress)
    k = vq.codebook_size
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
    studies = read_manifest(manifest)
    if classifier is not None:
        from radllm.encoders import clinical_agreement, load_cxr_encoder

        encoder = load_cxr_encoder(classifier, device=device).freeze()
        metrics["clinical_agreement"] = clinical_agreement(encoder, originals.to(device), recons.to(device), batch_size)
        metrics["classifier"] = str(classifier)
        metrics.update(finding_auroc_metrics(encoder, originals, recons, data.items, studies, batch_size))
    else:
        metrics["note"] = NO_CLASSIFIER_NOTE
    train_studies = [s for s in studies if s.split == PROBE_TRAIN_SPLIT][:probe_train_limit]
    if probe is None:
        probe = any(value is not None for study in train_studies for value in study.labels.values())
        if not probe:
            metrics["probe/note"] = f"no labels in the {PROBE_TRAIN_SPLIT!r} studies of {manifest}: code probe skipped"
    if probe:
        eval_studies = [s for s in studies if s.split == split][:limit]
        metrics.update(probe_metrics(vq, train_studies, eval_studies, manifest, probe_config, batch_size, progress))
    out = Path(out_dir)
    atomic.write_json(out / "metrics.json", metrics)
    save_png(reconstruction_grid(originals[:GRID_IMAGES], recons[:GRID_IMAGES]), out / "reconstructions.png")
    return metrics


def finding_auroc_metrics(
    encoder: "CXREncoder", originals: torch.Tensor, recons: torch.Tensor, items: Sequence[ImageItem], studies: Sequence[Study], batch_size: int
) -> dict[str, float | None]:
    """``clinical/auroc_original/<finding>`` and ``clinical/auroc_reconstruction/<finding>``.

    The classifier's AUROC per finding against the studies' labels (what the image shows: the
    code probe's label policy), on the originals and on their reconstructions; empty when no
    evaluated study carries a label.
    """
    from radllm.encoders import finding_aurocs

    labels = {study.study_id: study.labels for study in studies}
    if all(value is None for item in items for value in labels[item.study_id].values()):
        return {}
    targets = [[PROBE_LABEL_POLICY.target(labels[item.study_id].get(name)) for name in encoder.label_names] for item in items]
    device = encoder.device
    aurocs = finding_aurocs(encoder, originals.to(device), recons.to(device), targets, batch_size)
    return {f"clinical/auroc_{which}/{slug(name)}": value for which, per_label in aurocs.items() for name, value in per_label.items()}


def probe_metrics(
    vq: ImageTokenizer,
    train_studies: Sequence[Study],
    eval_studies: Sequence[Study],
    manifest: str | os.PathLike,
    config: ProbeConfig | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """The ``probe/`` keys: `code_probe` on the codes of each study's first frontal image.

    Raises:
        RadllmError: a side without a readable frontal image, or no observation to train on.
    """
    started = time.perf_counter()
    root = manifest_root(manifest)
    sides = {}
    for what, studies in (("train", train_studies), ("eval", eval_studies)):
        codes, labels, skipped = study_codes(vq, studies, root, batch_size, progress, f"probe {what} codes")
        if not labels:
            raise RadllmError(f"{manifest}: code probe: no readable frontal image among the {len(studies)} {what} studies")
        sides[what] = (codes, labels, skipped)
    encode_seconds = time.perf_counter() - started
    (train_codes, train_labels, train_skipped), (eval_codes, eval_labels, eval_skipped) = sides["train"], sides["eval"]
    result = code_probe(train_codes, train_labels, eval_codes, eval_labels, vq.codebook_size, config)
    return {
        **result.metrics(),
        "probe/excluded": result.excluded,
        "probe/n_train_skipped": train_skipped,
        "probe/n_eval_skipped": eval_skipped,
        "probe/encode_seconds": round(encode_seconds, 2),
    }


def study_codes(
    vq: ImageTokenizer, studies: Sequence[Study], root: Path, batch_size: int, progress: bool, desc: str
) -> tuple[torch.Tensor, list[Labels], int]:
    """Codes [N, h, w] of each study's first frontal image, the studies' labels, and how many were left out.

    One image per study, as a report model sees one frontal view; studies without a frontal
    image or whose image cannot be read are left out and counted.
    """
    items, labels = [], {}
    for study in studies:
        frontal = [(ref, path) for ref, path in zip(study.images, study.image_paths(root)) if ref.is_frontal]
        if frontal:
            items.append(ImageItem(study.study_id, frontal[0][1], frontal[0][0].view))
            labels[study.study_id] = study.labels
    pairs = list(encode_items(vq, items, batch_size, progress, desc))
    codes = torch.stack([c for _, c in pairs]) if pairs else torch.zeros(0, *vq.grid, dtype=torch.long)
    return codes, [labels[item.study_id] for item, _ in pairs], len(studies) - len(pairs)
