"""Clinical efficacy: precision / recall / F1 of the findings a generated report states.

Each (study, observation) pair becomes binary on both sides before counting: 1 positive, 0 or
blank negative (a report that does not mention a finding is read as not reporting it), and -1
uncertain by the chosen policy:

* ``positive``: uncertain counts as positive (the usual choice for report generation papers);
* ``negative``: uncertain counts as negative;
* ``ignore``: a pair where either side is uncertain is left out of that observation's counts.

Micro averages pool the confusion counts over observations; macro averages are the mean of
per-observation values, with 0 for an undefined ratio (no predicted or no true positives), as
scikit-learn's ``zero_division=0`` does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from radllm.labels import Labels

UNCERTAIN_POLICIES = ("positive", "negative", "ignore")


@dataclass(frozen=True)
class Confusion:
    """Counts of one observation (or pooled over several)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0


def binarize(value: int | None, policy: str) -> int | None:
    """1/0, or None when the pair is to be ignored (policy "ignore" and an uncertain label)."""
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {policy!r} not one of {UNCERTAIN_POLICIES}")
    if value == -1:
        return {"positive": 1, "negative": 0, "ignore": None}[policy]
    return 1 if value == 1 else 0


TP, FP, FN, TN = range(4)  # index of each count in the last axis of `pair_counts`
_SLOT = {(1, 1): TP, (1, 0): FP, (0, 1): FN, (0, 0): TN}  # (predicted, reference) -> slot


def pair_counts(
    predicted: Sequence[Labels],
    reference: Sequence[Labels],
    observations: Sequence[str],
    policy: str,
    contradicted: Sequence[Collection[str]] | None = None,
) -> np.ndarray:
    """Confusion counts of every (study, observation) pair: int array [studies, observations, 4] of (tp, fp, fn, tn).

    Each pair is one-hot in the last axis, or all zero when the policy ignores it. Summed over
    studies it gives `confusion_tables`; kept per study, it lets the bootstrap
    (`radllm.evaluation.bootstrap`) recompute micro averages of resampled studies from summed counts.

    `contradicted[i]` (strict scoring): observations that report i both affirms and negates
    (`radllm.evaluation.coherence`). Such a pair is an error whichever way the reference goes: a
    false negative when the reference is positive, a false positive when it is negative.
    """
    if len(predicted) != len(reference) or (contradicted is not None and len(contradicted) != len(predicted)):
        raise ValueError(f"need paired labels: {len(predicted)} predicted vs {len(reference)} reference"
                         + ("" if contradicted is None else f" vs {len(contradicted)} contradiction sets"))
    counts = np.zeros((len(predicted), len(observations), 4), dtype=np.int64)
    for i, (pred, ref) in enumerate(zip(predicted, reference)):
        for j, name in enumerate(observations):
            p, r = binarize(pred.get(name), policy), binarize(ref.get(name), policy)
            if p is not None and r is not None:
                if contradicted is not None and name in contradicted[i]:
                    p = 1 - r  # whatever the reference, the report got it wrong
                counts[i, j, _SLOT[p, r]] = 1
    return counts


def confusion_tables(
    predicted: Sequence[Labels],
    reference: Sequence[Labels],
    observations: Sequence[str],
    policy: str,
    contradicted: Sequence[Collection[str]] | None = None,
) -> dict[str, Confusion]:
    """One `Confusion` per observation over paired label dicts (strict with `contradicted`, see `pair_counts`)."""
    totals = pair_counts(predicted, reference, observations, policy, contradicted).sum(axis=0)  # [observations, 4]
    return {name: Confusion(*(int(c) for c in totals[j])) for j, name in enumerate(observations)}


def averaged_scores(tables: dict[str, Confusion]) -> dict[str, float]:
    """precision/recall/f1, each ``_micro`` and ``_macro``, over the given tables."""
    pooled = sum(tables.values(), Confusion())
    n = max(len(tables), 1)  # no tables (no observation present): every average is 0
    return {
        "precision_micro": pooled.precision,
        "recall_micro": pooled.recall,
        "f1_micro": pooled.f1,
        "precision_macro": sum(t.precision for t in tables.values()) / n,
        "recall_macro": sum(t.recall for t in tables.values()) / n,
        "f1_macro": sum(t.f1 for t in tables.values()) / n,
    }
