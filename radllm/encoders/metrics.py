"""Per-label classification metrics (AUROC, accuracy, F1) and decision-threshold selection.

Plain numpy so they work on any probabilities, not only this package's models. Undefined values
(AUROC or F1 without positives) are None rather than NaN so metrics.json stays valid JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLD_METRICS = ("f1", "accuracy")


def binary_auroc(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Returns None when `targets` lacks either class.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(targets).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average rank per tie group
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _confusion(scores: np.ndarray, positive: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positive counts of ``scores >= t`` for every t in `thresholds`."""
    pos_sorted, neg_sorted = np.sort(scores[positive]), np.sort(scores[~positive])
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = len(neg_sorted) - np.searchsorted(neg_sorted, thresholds, side="left")
    return tp, fp


def _score(metric: str, tp: np.ndarray, fp: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    if metric == "f1":
        denom = tp + fp + n_pos  # = 2tp + fp + fn
        return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
    return (tp + (n_neg - fp)) / float(n_pos + n_neg)


def choose_threshold(scores: np.ndarray, targets: np.ndarray, metric: str = "f1") -> float:
    """The probability threshold that maximises `metric` ("f1" or "accuracy") on these scores.

    Candidates lie halfway between consecutive distinct scores (plus one below the lowest and one
    above the highest), so the chosen cut sits in the middle of a gap rather than on a sample.
    When one class is absent F1 is undefined and accuracy is maximised instead; without any
    scores the threshold is 0.5.
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"threshold metric {metric!r} not one of {THRESHOLD_METRICS}")
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(targets).astype(bool)
    if scores.size == 0:
        return 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        metric = "accuracy"
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] / 2.0], (distinct[:-1] + distinct[1:]) / 2.0, [(distinct[-1] + 1.0) / 2.0]])
    tp, fp = _confusion(scores, positive, candidates)
    values = _score(metric, tp, fp, n_pos, n_neg)
    best = np.flatnonzero(values == values.max())
    return float(candidates[best[len(best) // 2]])  # middle of a run of equally good cuts


def binary_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUROC, plus accuracy and F1 of ``scores >= threshold``, and the class counts."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(targets).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    tp, fp = _confusion(scores, positive, np.array([threshold]))
    return {
        "auroc": binary_auroc(scores, positive),
        "accuracy": float(_score("accuracy", tp, fp, n_pos, n_neg)[0]) if n_pos + n_neg else None,
        "f1": float(_score("f1", tp, fp, n_pos, n_neg)[0]) if n_pos else None,
        "threshold": float(threshold),
        "n_positive": n_pos,
        "n_negative": n_neg,
    }


def label_metrics(
    probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, label_names: Sequence[str], thresholds: Sequence[float]
) -> dict[str, Any]:
    """Per-label metrics over entries where `mask` is set, and their macro averages.

    probs, targets, mask: [N, L]; label j uses rows with ``mask[:, j]`` (certain labels only).
    """
    per_label = {}
    for j, name in enumerate(label_names):
        rows = np.asarray(mask[:, j]).astype(bool)
        per_label[name] = binary_metrics(probs[rows, j], targets[rows, j], thresholds[j])
    macro = {}
    for key in ("auroc", "accuracy", "f1"):
        values = [m[key] for m in per_label.values() if m[key] is not None]
        macro[key] = float(np.mean(values)) if values else None
    return {"per_label": per_label, "macro": macro}
