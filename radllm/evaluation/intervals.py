"""Bootstrap intervals of the headline metrics, and paired differences between prediction sets.

`radllm evaluate` scores a model next to its baselines and controls (the shuffled-image control
of `radllm generate --shuffle-images`); whether the model is better is a question about the
*difference*, on the same studies. Studies are resampled with replacement (a study's questions
move together), the same resamples for both sides (paired), and each statistic is recomputed per
resample (`radllm.evaluation.bootstrap`). Keys (README "Evaluation"):

    <group>[/<name>]/<metric>/ci_low, .../ci_high     95 % interval of a set's own value
    <group>/diff/<name>/<metric>                      unnamed (model) minus <name>, on the studies both scored
    <group>/diff/<name>/<metric>/ci_low, /ci_high     its paired 95 % interval
    <group>/diff/<name>/n_studies                     studies in the comparison

with (group, metric) in `METRICS`. Micro F1 over the "present" observations keeps the set of
observations of the point value (those with a positive reference among the compared studies)
in every resample, so each resample measures the same thing; VQA macro AUROC likewise averages
the observations defined on the point sample, each resample leaving out those it lacks a class of.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radllm.evaluation.bootstrap import (
    Statistic, auroc, evaluate_resamples, micro_f1, percentile_interval, point_value, ratio, resample_weights,
)
from radllm.evaluation.clinical import FN, TP
from radllm.evaluation.vqa import QuestionOutcome

#: (group, metric) pairs that get intervals; the metric names are those of the point values.
METRICS = (
    ("report", "ce_f1_micro_present"),
    ("report", "ce_f1_micro_present_strict"),
    ("report", "contradiction_rate"),
    ("vqa", "auroc_macro"),
    ("vqa", "auroc_micro"),
    ("vqa", "accuracy"),
    ("image", "gen_clinical_f1_micro"),
)
DIFF = "diff"  # the key segment of differences (a reserved prediction-set name)


@dataclass
class Outcomes:
    """What the bootstrap resamples for one prediction set, per study (or per question)."""

    report: dict[str, np.ndarray] = field(default_factory=dict)  # study id -> int [14, 4] (tp, fp, fn, tn) per observation
    report_strict: dict[str, np.ndarray] = field(default_factory=dict)  # the same, self-contradictions counted as errors
    contradicted: dict[str, bool] = field(default_factory=dict)  # study id -> the report contradicts itself
    image: dict[str, np.ndarray] = field(default_factory=dict)  # study id -> int [findings, 4]: classifier vs requested
    vqa: dict[tuple, QuestionOutcome] = field(default_factory=dict)  # (study id, observation, question) -> outcome


def report_statistics(outcomes: Outcomes, ids: Sequence[str]) -> dict[str, Statistic]:
    """The ``report`` statistics of `METRICS` over the studies `ids`, in that order."""
    counts = np.stack([outcomes.report[i] for i in ids])  # [n, 14, 4]
    present = (counts[:, :, TP] + counts[:, :, FN]).sum(axis=0) > 0  # [14]
    out = {"ce_f1_micro_present": micro_f1(counts[:, present].sum(axis=1))}
    if outcomes.report_strict:
        strict = np.stack([outcomes.report_strict[i] for i in ids])
        out["ce_f1_micro_present_strict"] = micro_f1(strict[:, present].sum(axis=1))
    if outcomes.contradicted:
        out["contradiction_rate"] = ratio(np.array([float(outcomes.contradicted[i]) for i in ids]), np.ones(len(ids)))
    return out


def image_statistics(outcomes: Outcomes, ids: Sequence[str]) -> dict[str, Statistic]:
    """{"gen_clinical_f1_micro"}: micro F1 of the findings found in generated images against those requested."""
    return {"gen_clinical_f1_micro": micro_f1(np.stack([outcomes.image[i] for i in ids]).sum(axis=1))}


def _macro_auroc(parts: list[Statistic]) -> Statistic:
    def statistic(weights: np.ndarray) -> np.ndarray:
        values = np.stack([part(weights) for part in parts])  # [observations, B]
        defined = np.isfinite(values)
        return np.divide(np.where(defined, values, 0.0).sum(axis=0), defined.sum(axis=0),
                         out=np.full(values.shape[1], np.nan), where=defined.sum(axis=0) > 0)

    return statistic


def vqa_statistics(vqa: Mapping[tuple, QuestionOutcome], keys: Sequence[tuple], ids: Sequence[str]) -> dict[str, Statistic]:
    """{"auroc_macro", "auroc_micro", "accuracy"} over the questions `keys`, resampled by their studies `ids` (in that order)."""
    column = {sid: i for i, sid in enumerate(ids)}
    answered = [vqa[k] for k in keys if vqa[k].correct is not None]
    studies = np.array([column[o.study_id] for o in answered], dtype=np.int64)
    correct = np.bincount(studies, weights=[float(o.correct) for o in answered], minlength=len(ids))
    asked = np.bincount(studies, minlength=len(ids))
    ranked = [o for o in answered if o.target is not None]

    def ranking(items: list[QuestionOutcome]) -> Statistic:
        return auroc(np.array([column[o.study_id] for o in items], dtype=np.int64),
                     np.array([o.p_yes for o in items]), np.array([o.target for o in items]))

    per_observation = {}
    for o in ranked:
        per_observation.setdefault(o.observation, []).append(o)
    defined = [items for items in per_observation.values() if 0 < sum(o.target for o in items) < len(items)]
    return {
        "auroc_macro": _macro_auroc([ranking(items) for items in defined]),
        "auroc_micro": ranking(ranked),
        "accuracy": ratio(correct, asked),
    }


def _statistics(outcomes: Outcomes) -> dict[str, tuple[list[str], dict[str, Statistic]]]:
    """group -> (study ids, statistics) of every group the set has outcomes for."""
    out = {}
    if outcomes.report:
        ids = sorted(outcomes.report)
        out["report"] = (ids, report_statistics(outcomes, ids))
    if outcomes.image:
        ids = sorted(outcomes.image)
        out["image"] = (ids, image_statistics(outcomes, ids))
    if outcomes.vqa:
        keys = list(outcomes.vqa)
        ids = _studies_of(keys)
        out["vqa"] = (ids, vqa_statistics(outcomes.vqa, keys, ids))
    return out


def own_intervals(outcomes: Outcomes, resamples: int, seed: int) -> dict[str, Any]:
    """``<group>/<metric>/ci_low`` and ``/ci_high`` of one set (unnamed keys; `named_keys` adds the name)."""
    out: dict[str, Any] = {}
    for group, (ids, statistics) in _statistics(outcomes).items():
        out.update(_intervals(group, statistics, len(ids), resamples, seed))
    return out


def paired_differences(model: Outcomes, other: Outcomes, name: str, resamples: int, seed: int) -> dict[str, Any]:
    """``<group>/diff/<name>/...``: `model` minus `other` on the studies (questions) both scored, with paired intervals."""
    out: dict[str, Any] = {}
    common = sorted(set(model.report) & set(other.report))
    if common:
        mine, theirs = report_statistics(model, common), report_statistics(other, common)
        shared = [m for m in mine if m in theirs]
        out.update(_differences("report", name, {m: _minus(mine[m], theirs[m]) for m in shared}, len(common), resamples, seed))
    common = sorted(set(model.image) & set(other.image))
    if common:
        mine, theirs = image_statistics(model, common), image_statistics(other, common)
        out.update(_differences("image", name, {m: _minus(mine[m], theirs[m]) for m in mine}, len(common), resamples, seed))
    keys = [k for k in model.vqa if k in other.vqa]
    if keys:
        ids = _studies_of(keys)
        mine, theirs = vqa_statistics(model.vqa, keys, ids), vqa_statistics(other.vqa, keys, ids)
        out.update(_differences("vqa", name, {m: _minus(mine[m], theirs[m]) for m in mine}, len(ids), resamples, seed))
    return out


def _studies_of(keys: Sequence[tuple]) -> list[str]:
    return sorted({k[0] for k in keys})


def _minus(a: Statistic, b: Statistic) -> Statistic:
    return lambda weights: a(weights) - b(weights)


def _intervals(group: str, statistics: Mapping[str, Statistic], n: int, resamples: int, seed: int) -> dict[str, Any]:
    weights = resample_weights(n, resamples, seed)
    out: dict[str, Any] = {}
    for metric, statistic in statistics.items():
        out[f"{group}/{metric}/ci_low"], out[f"{group}/{metric}/ci_high"] = percentile_interval(evaluate_resamples(statistic, weights))
    return out


def _differences(group: str, name: str, statistics: Mapping[str, Statistic], n: int, resamples: int, seed: int) -> dict[str, Any]:
    prefix = f"{group}/{DIFF}/{name}"
    out: dict[str, Any] = {f"{prefix}/n_studies": n}
    for metric, statistic in statistics.items():
        out[f"{prefix}/{metric}"] = point_value(statistic, n)
    intervals = _intervals(group, statistics, n, resamples, seed)  # "<group>/<metric>/ci_*" keys
    out.update({f"{prefix}/{key.partition('/')[2]}": value for key, value in intervals.items()})
    return out
