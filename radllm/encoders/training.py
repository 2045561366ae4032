"""Training recipe of the small-cnn CXR classifier: setup -> fit -> choose thresholds -> evaluate -> save.

Deterministic given `seed` (initialisation, shuffling and augmentation draw from seeded
generators; CPU kernels are run with a fixed thread count).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from radllm.encoders.architectures import SMALL_CNN, build_backbone
from radllm.encoders.dataset import LabelledImages, LabelPolicy, load_labelled_images, select_observations
from radllm.encoders.encoder import CXREncoder
from radllm.encoders.metrics import choose_threshold, label_metrics
from radllm.encoders.spec import EncoderSpec
from radllm.encoders.storage import save_cxr_encoder
from radllm.encoders.train_config import CXREncoderTrainConfig
from radllm.errors import RadllmError
from radllm.manifest import manifest_root, read_manifest
from radllm.recipe.schedule import warmup_cosine

log = logging.getLogger(__name__)

MAX_POS_WEIGHT = 10.0


@dataclass
class EncoderSplits:
    label_names: list[str]
    excluded: dict[str, str]  # observation -> why it is not trained on
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages | None


def train_cxr_encoder(config: CXREncoderTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train, pick per-label thresholds on val, evaluate val/test, write `config.out_dir`.

    Returns the metrics that are also written to metrics.json.
    Raises:
        RadllmError: bad config values, missing manifest, empty splits, no trainable labels.
    """
    config.validate()
    torch.set_num_threads(config.num_threads)
    splits = load_splits(config, progress)
    torch.manual_seed(config.seed)
    encoder = build_small_cnn_encoder(config, splits.label_names)
    started = time.perf_counter()
    losses = fit(encoder, splits.train, config, progress)
    train_seconds = time.perf_counter() - started
    encoder.eval()
    val_probs = predict_probs(encoder, splits.val, config.eval_batch_size)
    encoder.set_thresholds(
        [
            choose_threshold(val_probs[rows, j], splits.val.targets.numpy()[rows, j], config.threshold_metric)
            for j, rows in enumerate(splits.val.mask.numpy().astype(bool).T)
        ]
    )
    metrics: dict[str, Any] = {
        "label_names": splits.label_names,
        "excluded_observations": splits.excluded,
        "uncertain_policy": config.data.uncertain_policy,
        "blank_policy": config.data.blank_policy,
        "threshold_metric": config.threshold_metric,
        "train": {
            "n_images": len(splits.train),
            "steps": len(losses),
            "final_loss": float(np.mean(losses[-20:])),
            "seconds": round(train_seconds, 2),
        },
        "skipped_images": sum(len(s.skipped) for s in (splits.train, splits.val, splits.test) if s is not None),
        "val": evaluate(encoder, splits.val, config.eval_batch_size, val_probs),
        "test": evaluate(encoder, splits.test, config.eval_batch_size) if splits.test is not None else None,
    }
    save_cxr_encoder(encoder, config.out_dir, metrics=metrics, run_config=config)
    log.info("wrote %s (val macro AUROC %s)", config.out_dir, metrics["val"]["macro"]["auroc"])
    return metrics


def load_splits(config: CXREncoderTrainConfig, progress: bool) -> EncoderSplits:
    """Read the manifest, choose the labels from train, decode the images of each split."""
    studies = read_manifest(config.data.manifest)
    root = manifest_root(config.data.manifest)
    by_split = {name: [s for s in studies if s.split == name] for name in ("train", "val", "test")}
    for required in ("train", "val"):
        if not by_split[required]:
            raise RadllmError(f"{config.data.manifest}: no {required!r} studies (thresholds are chosen on 'val')")
    policy = LabelPolicy(uncertain=config.data.uncertain_policy, blank=config.data.blank_policy)
    labels, excluded = select_observations(by_split["train"], config.data.observations, policy)
    loaded = {}
    for name, members in by_split.items():
        if not members:
            loaded[name] = None
            continue
        data = load_labelled_images(members, root, labels, config.data.image_size, config.data.views, policy, progress, desc=name)
        if len(data) == 0:
            raise RadllmError(
                f"{config.data.manifest}: no usable {name!r} images with views {config.data.views} "
                f"({len(data.skipped)} unreadable{', first: ' + data.skipped[0] if data.skipped else ''})"
            )
        loaded[name] = data
    return EncoderSplits(labels, excluded, loaded["train"], loaded["val"], loaded["test"])


def build_small_cnn_encoder(config: CXREncoderTrainConfig, label_names: list[str]) -> CXREncoder:
    """A freshly initialised small-cnn encoder whose inputs are scaled from [0, 1] to [-1, 1]."""
    options = dataclasses.asdict(config.model)
    spec = EncoderSpec(
        arch=SMALL_CNN,
        label_names=list(label_names),
        output_names=list(label_names),
        output_indices=list(range(len(label_names))),
        thresholds=[0.5] * len(label_names),
        input_size=config.data.image_size,
        input_scale=2.0,
        input_shift=-1.0,
        arch_options=options,
    )
    return CXREncoder(build_backbone(SMALL_CNN, len(label_names), options, "model"), spec)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean binary cross-entropy over the unmasked (image, label) entries."""
    losses = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)


def positive_weights(data: LabelledImages) -> torch.Tensor:
    """n_negative / n_positive per label (unmasked entries), capped at MAX_POS_WEIGHT."""
    positives = (data.targets * data.mask).sum(0)
    negatives = ((1 - data.targets) * data.mask).sum(0)
    return (negatives / positives.clamp(min=1.0)).clamp(1.0, MAX_POS_WEIGHT)


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels per axis, filling with the edge values."""
    if max_shift == 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")  # [B, 1, S+2m, S+2m]
    offsets = torch.randint(0, 2 * max_shift + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(offsets)])


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half (in expectation) of the images left-right."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def fit(encoder: CXREncoder, data: LabelledImages, config: CXREncoderTrainConfig, progress: bool) -> list[float]:
    """Run `optim.epochs` epochs of masked multi-label BCE (lr: warmup, then cosine decay to zero); returns the per-step losses."""
    encoder.train()
    optim = config.optim
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    pos_weight = positive_weights(data) if optim.balance_classes else None
    steps_per_epoch = math.ceil(len(data) / optim.batch_size)
    total = optim.epochs * steps_per_epoch
    losses: list[float] = []
    bar = tqdm(total=total, desc="train cxr encoder", disable=not progress, unit="step")
    for _ in range(optim.epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), optim.batch_size):
            images, targets, mask = data.batch(order[start : start + optim.batch_size])
            images = random_shift(images, config.data.augment_shift, generator)
            if config.data.augment_flip:
                images = random_flip(images, generator)
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(len(losses), optim.lr, optim.warmup_steps, total, 0.0)
            loss = masked_bce(encoder(images), targets, mask, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
    bar.close()
    return losses


@torch.no_grad()
def predict_probs(encoder: CXREncoder, data: LabelledImages, batch_size: int) -> np.ndarray:
    """Probabilities [N, L] for every example of `data` (encoder in eval mode)."""
    chunks = [
        encoder.predict(data.batch(torch.arange(start, min(start + batch_size, len(data))))[0])
        for start in range(0, len(data), batch_size)
    ]
    return torch.cat(chunks).cpu().numpy()


def evaluate(encoder: CXREncoder, data: LabelledImages, batch_size: int, probs: np.ndarray | None = None) -> dict[str, Any]:
    """Per-label AUROC/accuracy/F1 at the encoder's thresholds, over the labels the policy keeps."""
    probs = predict_probs(encoder, data, batch_size) if probs is None else probs
    result = label_metrics(probs, data.targets.numpy(), data.mask.numpy(), encoder.label_names, encoder.spec.thresholds)
    result["n_images"] = len(data)
    return result
