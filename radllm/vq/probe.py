"""Code probe: how much of the findings a small classifier can read from a tokenizer's codes.

A language model sees an image only as its grid of codes, so PSNR or the clinical agreement of
reconstructions says little about what the LM can learn: a tokenizer can redraw an effusion well
enough for a classifier on pixels while spreading it over codes no reader could tell apart. The
probe trains a small classifier on the train split's code grids and scores it on held-out codes
with the clinical F1 that `radllm evaluate` gives generated reports (`ce_f1_micro_present`), so
the two numbers can be set side by side: a report model is unlikely to beat its tokenizer's probe.

The classifier is deliberately small and position-aware, like what an LM's first layers can
extract: a learned embedding per code plus a learned embedding per grid position, one 3x3
convolution over the grid (local context), a 1x1 layer, mean pooling and a linear multi-label
head. (One attention layer would be closer to an LM but costs ~15x the CPU time at 16x16.)

Labels follow the demo CXR encoder: uncertain (-1) as positive, blank as negative, i.e. what the
image shows; the same mapping `radllm evaluate` uses for clinical F1 by default. Budgets are fixed
(epochs, seed), never wall-clock, so a figure can be reproduced.

Decision thresholds are chosen for F1 per observation on a holdout of the train codes by default;
a caller with its own validation split passes it as `threshold_codes` / `threshold_labels`, and
the probe then fits on every train grid and chooses thresholds there (`radllm baselines` does).

    from radllm.vq.probe import ProbeConfig, code_probe
    result = code_probe(train_codes, train_labels, eval_codes, eval_labels, codebook_size=256)
    result.f1_micro_present, result.metrics()  # {"probe/f1_micro_present": ..., ...}
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radllm.clinical_efficacy import clinical_efficacy
from radllm.encoders.dataset import LabelPolicy
from radllm.encoders.metrics import binary_auroc, choose_threshold
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, Labels, slug
from radllm.recipe.schedule import warmup_cosine

#: Manifest labels -> probe targets: what the image shows (as configs/demo/cxr_encoder.yaml).
PROBE_LABEL_POLICY = LabelPolicy(uncertain="ones", blank="zeros")
#: Uncertain policy of the clinical F1 on the eval split (radllm evaluate's default).
CE_UNCERTAIN_POLICY = "positive"


@dataclass(frozen=True)
class ProbeConfig:
    """Size and fixed training budget of the probe.

    Defaults cost ~20 s for 4,800 8x8 grids and ~2 min for 4,800 16x16 grids on one busy core.
    """

    dim: int = 32  # code and position embedding width; the conv keeps it, the 1x1 layer doubles it
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    holdout_fraction: float = 0.2  # of the train studies, kept out of fitting to choose thresholds
    seed: int = 0
    # Intra-op CPU threads while the probe runs (restored after). Its layers are too small to gain
    # from more: on a busy 2-core machine 2 threads took 2-10x longer than 1 (they only contend).
    threads: int = 1

    def validate(self) -> "ProbeConfig":
        """Raise RadllmError naming the first bad field."""
        checks = (
            (self.dim >= 1, "dim", "a positive integer"),
            (self.epochs >= 1, "epochs", "a positive integer"),
            (self.batch_size >= 1, "batch_size", "a positive integer"),
            (self.lr > 0, "lr", "a positive number"),
            (self.weight_decay >= 0, "weight_decay", "a non-negative number"),
            (self.warmup_steps >= 0, "warmup_steps", "a non-negative integer"),
            (0 < self.holdout_fraction < 1, "holdout_fraction", "a number in (0, 1)"),
            (self.threads >= 1, "threads", "a positive integer"),
        )
        for ok, name, expected in checks:
            if not ok:
                raise RadllmError(f"probe {name} = {getattr(self, name)!r}; expected {expected}")
        return self


class CodeProbeNet(nn.Module):
    """Code grid [B, h, w] -> one logit per observation [B, L]."""

    def __init__(self, codebook_size: int, grid: tuple[int, int], n_outputs: int, dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.codes = nn.Embedding(codebook_size, dim)
        self.position = nn.Parameter(torch.randn(grid[0] * grid[1], dim) * 0.02)
        self.local = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.mix = nn.Conv2d(dim, 2 * dim, kernel_size=1)
        self.head = nn.Linear(4 * dim, n_outputs)

    def forward(self, codes: Tensor) -> Tensor:
        B, h, w = codes.shape
        x = self.codes(codes.flatten(1)) + self.position  # [B, h*w, D]
        x = x.transpose(1, 2).reshape(B, -1, h, w)  # [B, D, h, w]
        x = F.gelu(self.mix(F.gelu(self.local(x)))).flatten(2)  # [B, 2D, h*w]
        return self.head(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1))  # [B, 4D] -> [B, L]


@dataclass
class ProbeResult:
    """Scores of the probe on the eval codes, and how it was trained.

    F1 values follow `radllm evaluate`'s clinical efficacy: every one of the 14 observations is
    predicted (one not trained on, having a single class in train, is predicted as that class),
    and "present" averages run over the observations with a positive eval label.
    """

    observations: list[str]  # trained on: both classes among the train labels
    excluded: dict[str, str]  # observation -> why it was not trained on
    thresholds: dict[str, float]  # per trained observation, chosen for F1 on the holdout (or the threshold codes)
    f1_micro_present: float
    f1_macro_present: float
    label_blind_f1_micro_present: float  # every trained observation predicted positive for every study
    n_present: int
    f1: dict[str, float]  # per observation (all 14)
    auroc: dict[str, float | None]  # per trained observation; None when the eval split has one class
    auroc_macro: float | None  # mean of the defined per-observation AUROCs
    n_fit: int
    n_holdout: int  # train grids held out to choose thresholds; 0 when threshold codes were given
    n_eval: int
    grid: list[int]
    steps: int
    final_loss: float  # mean BCE of the last 20 steps
    seconds: float  # fitting and prediction (not encoding)
    probabilities: np.ndarray = field(repr=False)  # [n_eval, len(observations)]
    predictions: list[Labels] = field(repr=False)  # 1/0 per observation (all 14) per eval study
    # The grids the thresholds were chosen on: "train holdout" or "threshold codes" (given by the
    # caller), how many, and each trained observation's AUROC there (None: one class only).
    thresholds_from: str = "train holdout"
    n_threshold: int = 0
    threshold_auroc: dict[str, float | None] = field(default_factory=dict)

    def metrics(self, prefix: str = "probe/") -> dict[str, Any]:
        """Flat JSON-ready keys, e.g. ``probe/f1_micro_present``, ``probe/f1/cardiomegaly``."""
        out: dict[str, Any] = {
            "f1_micro_present": self.f1_micro_present,
            "f1_macro_present": self.f1_macro_present,
            "label_blind_f1_micro_present": self.label_blind_f1_micro_present,
            "auroc_macro": self.auroc_macro,
            "n_present": self.n_present,
            "n_train": self.n_fit + self.n_holdout,
            "n_fit": self.n_fit,
            "n_holdout": self.n_holdout,
            "n_eval": self.n_eval,
            "observations": list(self.observations),
            "steps": self.steps,
            "final_loss": self.final_loss,
            "seconds": self.seconds,
        }
        out.update({f"f1/{slug(name)}": value for name, value in self.f1.items()})
        out.update({f"auroc/{slug(name)}": value for name, value in self.auroc.items()})
        out.update({f"threshold/{slug(name)}": value for name, value in self.thresholds.items()})
        return {prefix + key: value for key, value in out.items()}


def probe_targets(labels: Sequence[Labels], names: Sequence[str]) -> np.ndarray:
    """Float [N, len(names)] 0/1 targets under `PROBE_LABEL_POLICY` (blank = 0, uncertain = 1)."""
    rows = [[PROBE_LABEL_POLICY.target(study.get(name)) for name in names] for study in labels]
    return np.asarray(rows, dtype=np.float32).reshape(len(labels), len(names))


def code_probe(
    train_codes: Tensor,
    train_labels: Sequence[Labels],
    eval_codes: Tensor,
    eval_labels: Sequence[Labels],
    codebook_size: int,
    config: ProbeConfig | None = None,
    threshold_codes: Tensor | None = None,
    threshold_labels: Sequence[Labels] | None = None,
) -> ProbeResult:
    """Train the probe on `train_codes`, choose thresholds on a holdout of them (or on `threshold_codes`), score `eval_codes`.

    Args:
        train_codes, eval_codes: integer code grids [N, h, w] (the same h, w), values in [0, K).
        train_labels, eval_labels: one label dict (observation -> 1/0/-1/None) per grid.
        codebook_size: K, the number of codes of the tokenizer.
        config: size and budget; `ProbeConfig()` when None.
        threshold_codes, threshold_labels: grids and labels of a validation split to choose the
            thresholds on (both or neither). Given, the probe fits on every train grid and
            `config.holdout_fraction` is not used.

    Returns:
        A `ProbeResult`; `.metrics()` gives the ``probe/`` keys of `radllm vq-eval`.

    Raises:
        RadllmError: shapes or counts that do not match, codes outside [0, K), too few train
            grids for a holdout, or no observation with both classes among the train labels.
    """
    config = (config or ProbeConfig()).validate()
    explicit = threshold_codes is not None or threshold_labels is not None
    if explicit and (threshold_codes is None or threshold_labels is None):
        raise RadllmError("probe: give both threshold_codes and threshold_labels, or neither")
    _check_codes(train_codes, len(train_labels), codebook_size, "train")
    _check_codes(eval_codes, len(eval_labels), codebook_size, "eval")
    if train_codes.shape[1:] != eval_codes.shape[1:]:
        raise RadllmError(f"probe: train grids {list(train_codes.shape[1:])} and eval grids {list(eval_codes.shape[1:])} differ")
    if explicit:
        _check_codes(threshold_codes, len(threshold_labels), codebook_size, "threshold")
        if threshold_codes.shape[1:] != train_codes.shape[1:]:
            shapes = f"train grids {list(train_codes.shape[1:])} and threshold grids {list(threshold_codes.shape[1:])}"
            raise RadllmError(f"probe: {shapes} differ")
    all_targets = probe_targets(train_labels, OBSERVATIONS)  # [N, 14]
    positives = all_targets.sum(axis=0)
    trained = [i for i, n_pos in enumerate(positives) if 0 < n_pos < len(train_labels)]
    excluded = {OBSERVATIONS[i]: f"{int(n_pos)} positive of {len(train_labels)} train studies"
                for i, n_pos in enumerate(positives) if i not in trained}
    if not trained:
        raise RadllmError(f"probe: no observation has both positive and negative train labels ({excluded})")
    names = [OBSERVATIONS[i] for i in trained]
    targets = torch.from_numpy(all_targets[:, trained])  # [N, L]

    started = time.perf_counter()
    if explicit:
        n_holdout, fit_rows, holdout_rows = 0, torch.arange(len(train_labels)), torch.arange(0)
    else:
        n_holdout = max(1, round(config.holdout_fraction * len(train_labels)))
        if len(train_labels) - n_holdout < 1:
            raise RadllmError(f"probe: {len(train_labels)} train studies are too few to fit and hold out {n_holdout}")
        order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(config.seed))
        fit_rows, holdout_rows = order[n_holdout:], order[:n_holdout]
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without moving the caller's RNG
            torch.manual_seed(config.seed)
            net = CodeProbeNet(codebook_size, tuple(train_codes.shape[1:]), len(names), config.dim)
        losses = fit_probe(net, train_codes[fit_rows].long(), targets[fit_rows], config)
        choice_codes = threshold_codes if explicit else train_codes[holdout_rows]
        holdout_probs = predict_probabilities(net, choice_codes.long())
        probs = predict_probabilities(net, eval_codes.long())  # [M, L]
    finally:
        torch.set_num_threads(caller_threads)
    holdout_targets = probe_targets(threshold_labels, names) if explicit else targets[holdout_rows].numpy()
    thresholds = [choose_threshold(holdout_probs[:, j], holdout_targets[:, j], "f1") for j in range(len(names))]
    seconds = time.perf_counter() - started

    constant = {OBSERVATIONS[i]: int(positives[i] > 0) for i in range(len(OBSERVATIONS)) if i not in trained}
    predictions = [{**constant, **{name: int(p >= t) for name, p, t in zip(names, row, thresholds)}} for row in probs]
    blind = [{**constant, **{name: 1 for name in names}} for _ in eval_labels]
    scores = clinical_efficacy(predictions, list(eval_labels), CE_UNCERTAIN_POLICY)
    eval_targets = probe_targets(eval_labels, names)
    auroc = {name: binary_auroc(probs[:, j], eval_targets[:, j]) for j, name in enumerate(names)}
    defined = [value for value in auroc.values() if value is not None]
    return ProbeResult(
        observations=names,
        excluded=excluded,
        thresholds=dict(zip(names, thresholds)),
        f1_micro_present=scores["ce_f1_micro_present"],
        f1_macro_present=scores["ce_f1_macro_present"],
        label_blind_f1_micro_present=clinical_efficacy(blind, list(eval_labels), CE_UNCERTAIN_POLICY)["ce_f1_micro_present"],
        n_present=int(scores["ce_n_present"]),
        f1={name: scores[f"ce_f1/{slug(name)}"] for name in OBSERVATIONS},
        auroc=auroc,
        auroc_macro=float(np.mean(defined)) if defined else None,
        n_fit=len(fit_rows),
        n_holdout=n_holdout,
        n_eval=len(eval_labels),
        grid=list(train_codes.shape[1:]),
        steps=len(losses),
        final_loss=float(np.mean(losses[-20:])),
        seconds=round(seconds, 2),
        probabilities=probs,
        predictions=predictions,
        thresholds_from="threshold codes" if explicit else "train holdout",
        n_threshold=len(holdout_probs),
        threshold_auroc={name: binary_auroc(holdout_probs[:, j], holdout_targets[:, j]) for j, name in enumerate(names)},
    )


def fit_probe(net: CodeProbeNet, codes: Tensor, targets: Tensor, config: ProbeConfig) -> list[float]:
    """`config.epochs` seeded epochs of multi-label BCE (AdamW, warmup + cosine); per-step losses."""
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed + 1)
    total = config.epochs * math.ceil(len(codes) / config.batch_size)
    losses: list[float] = []
    for _ in range(config.epochs):
        order = torch.randperm(len(codes), generator=generator)
        for start in range(0, len(codes), config.batch_size):
            rows = order[start : start + config.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(len(losses), config.lr, config.warmup_steps, total, 0.0)
            loss = F.binary_cross_entropy_with_logits(net(codes[rows]), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def predict_probabilities(net: CodeProbeNet, codes: Tensor, batch_size: int = 512) -> np.ndarray:
    """Sigmoid outputs [N, L] (float64) of the probe in eval mode."""
    net.eval()
    chunks = [torch.sigmoid(net(codes[start : start + batch_size])) for start in range(0, len(codes), batch_size)]
    return torch.cat(chunks).double().numpy() if chunks else np.zeros((0, net.head.out_features))


def _check_codes(codes: Tensor, n_labels: int, codebook_size: int, what: str) -> None:
    if codes.dim() != 3 or codes.dtype.is_floating_point:
        raise RadllmError(f"probe: {what} codes must be an integer tensor [N, h, w], got {codes.dtype} {list(codes.shape)}")
    if codes.shape[0] != n_labels:
        raise RadllmError(f"probe: {codes.shape[0]} {what} code grids but {n_labels} label dicts")
    if codes.shape[0] == 0:
        raise RadllmError(f"probe: no {what} code grids")
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= codebook_size:
        raise RadllmError(f"probe: {what} codes span [{low}, {high}]; expected values in [0, {codebook_size - 1}]")
