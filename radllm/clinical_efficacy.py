"""Clinical efficacy: precision / recall / F1 of the findings a report states, against reference labels.

radllm's one label-scoring primitive, below every layer that scores: the VQ-GAN's code probe
(`radllm.vq.probe`), the trainer's report samples (`radllm.training.samples`) and evaluation
(`radllm.evaluation`, which re-exports it from `evaluation/clinical.py`). It needs only the
observations of `radllm.labels`.

Each (study, observation) pair becomes binary on both sides before counting: 1 positive, 0 or
blank negative (a report that does not mention a finding is read as not reporting it), and -1
uncertain by the chosen policy:

* ``positive``: uncertain counts as positive (the usual choice for report generation papers);
* ``negative``: uncertain counts as negative;
* ``ignore``: a pair where either side is uncertain is left out of that observation's counts.

Micro averages pool the confusion counts over observations; macro averages are the mean of
per-observation values, with 0 for an undefined ratio (no predicted or no true positives), as
scikit-learn's ``zero_division=0`` does. `clinical_efficacy` assembles the ``ce_*`` metric keys.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from radllm.labels import COMMON_FIVE, NO_FINDING, OBSERVATIONS, Labels, slug

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
    (`radllm.labeler.coherence`). Such a pair is an error whichever way the reference goes: a
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


def clinical_efficacy(
    predicted: Sequence[Labels], reference: Sequence[Labels], policy: str, contradicted: Sequence[Collection[str]] | None = None
) -> dict[str, float]:
    """``ce_*`` keys (without the group prefix): averages over 14, 5 and the present observations, and per-observation values.

    "present" are the observations with at least one positive reference (after the uncertain
    policy) among the scored studies: on a dataset that never shows some findings (phantoms have
    no edema) their averages are not diluted by observations nobody could get right or wrong.
    ``ce_f1_micro_present_excl_no_finding`` leaves "No Finding" out of the present ones (a model
    that says "normal" to normal studies earns nothing there). With `contradicted` (per study, the
    observations the report both affirms and negates), ``ce_f1_micro_present_strict`` and
    ``ce_f1_macro_present_strict`` count each such observation as an error whichever way the
    reference goes, where the plain keys follow CheXpert and let the positive mention win.
    """
    tables = confusion_tables(predicted, reference, OBSERVATIONS, policy)
    present = [name for name in OBSERVATIONS if tables[name].tp + tables[name].fn > 0]
    out: dict[str, float] = {"ce_n_present": len(present)}
    for suffix, names in (("14", OBSERVATIONS), ("5", COMMON_FIVE), ("present", present)):
        for key, value in averaged_scores({n: tables[n] for n in names}).items():
            out[f"ce_{key}_{suffix}"] = value
    out["ce_f1_micro_present_excl_no_finding"] = averaged_scores({n: tables[n] for n in present if n != NO_FINDING})["f1_micro"]
    if contradicted is not None:
        strict = confusion_tables(predicted, reference, present, policy, contradicted)
        out["ce_f1_micro_present_strict"] = averaged_scores(strict)["f1_micro"]
        out["ce_f1_macro_present_strict"] = averaged_scores(strict)["f1_macro"]
    for name, table in tables.items():
        out[f"ce_precision/{slug(name)}"] = table.precision
        out[f"ce_recall/{slug(name)}"] = table.recall
        out[f"ce_f1/{slug(name)}"] = table.f1
        out[f"ce_n_positive/{slug(name)}"] = table.tp + table.fn
    return out
