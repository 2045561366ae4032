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
in every resample, so each resample measures the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radllm.evaluation.bootstrap import (
    Statistic, auroc, evaluate_resamples, micro_f1, percentile_interval, point_value, ratio, resample_weights,
)
from radllm.evaluation.clinical import pair_counts
from radllm.evaluation.inputs import Reference
from radllm.evaluation.reports import reference_labels
from radllm.evaluation.vqa import QuestionOutcome, question_outcomes
from radllm.labeler.model_labeler import ReportLabeler
from radllm.labels import OBSERVATIONS

#: (group, metric) pairs that get intervals; the metric names are those of the point values.
METRICS = (("report", "ce_f1_micro_present"), ("vqa", "auroc_micro"), ("vqa", "accuracy"))
DIFF = "diff"  # the key segment of differences (a reserved prediction-set name)
_TP, _FN = 0, 2  # indices in `pair_counts`' last axis


@dataclass
class Outcomes:
    """What the bootstrap resamples for one prediction set: per-study report counts and per-question outcomes."""

    report: dict[str, np.ndarray] = field(default_factory=dict)  # study id -> int [14, 4] (tp, fp, fn, tn) per observation
    vqa: dict[tuple, QuestionOutcome] = field(default_factory=dict)  # (study id, observation, question) -> outcome


def set_outcomes(
    predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], policy: str, report_source: str, truth_source: str,
    labeler: ReportLabeler,
) -> Outcomes:
    """Outcomes of one set's report and VQA records, scored as `radllm.evaluation.suite.compute_metrics` scores them
    (reference labels of reports from `report_source`, VQA truth from `truth_source`)."""
    outcomes = Outcomes()
    reports = predictions.get("report", [])
    if reports:
        truth = reference_labels([references[r["study_id"]] for r in reports], report_source, labeler)
        counts = pair_counts(labeler.label_many([r["report"] for r in reports]), truth, OBSERVATIONS, policy)
        outcomes.report = {r["study_id"]: c for r, c in zip(reports, counts)}
    questions = predictions.get("vqa", [])
    if questions:
        ids = sorted({r["study_id"] for r in questions})
        truth = dict(zip(ids, reference_labels([references[i] for i in ids], truth_source, labeler)))
        for record, outcome in zip(questions, question_outcomes(questions, truth, policy)):
            outcomes.vqa[(record["study_id"], record["observation"], record.get("question"))] = outcome
    return outcomes


def report_statistics(report: Mapping[str, np.ndarray], ids: Sequence[str]) -> dict[str, Statistic]:
    """{"ce_f1_micro_present": statistic over the studies `ids`, in that order}."""
    counts = np.stack([report[i] for i in ids])  # [n, 14, 4]
    present = (counts[:, :, _TP] + counts[:, :, _FN]).sum(axis=0) > 0  # [14]
    return {"ce_f1_micro_present": micro_f1(counts[:, present].sum(axis=1))}


def vqa_statistics(vqa: Mapping[tuple, QuestionOutcome], keys: Sequence[tuple], ids: Sequence[str]) -> dict[str, Statistic]:
    """{"auroc_micro", "accuracy"} over the questions `keys`, resampled by their studies `ids` (in that order)."""
    column = {sid: i for i, sid in enumerate(ids)}
    answered = [vqa[k] for k in keys if vqa[k].correct is not None]
    studies = np.array([column[o.study_id] for o in answered], dtype=np.int64)
    correct = np.bincount(studies, weights=[float(o.correct) for o in answered], minlength=len(ids))
    asked = np.bincount(studies, minlength=len(ids))
    ranked = [o for o in answered if o.target is not None]
    return {
        "auroc_micro": auroc(np.array([column[o.study_id] for o in ranked], dtype=np.int64),
                             np.array([o.p_yes for o in ranked]), np.array([o.target for o in ranked])),
        "accuracy": ratio(correct, asked),
    }


def _studies_of(keys: Sequence[tuple]) -> list[str]:
    return sorted({k[0] for k in keys})


def own_intervals(outcomes: Outcomes, resamples: int, seed: int) -> dict[str, Any]:
    """``<group>/<metric>/ci_low`` and ``/ci_high`` of one set (unnamed keys; `named_keys` adds the name)."""
    out: dict[str, Any] = {}
    if outcomes.report:
        ids = sorted(outcomes.report)
        out.update(_intervals("report", report_statistics(outcomes.report, ids), len(ids), resamples, seed))
    if outcomes.vqa:
        keys = list(outcomes.vqa)
        ids = _studies_of(keys)
        out.update(_intervals("vqa", vqa_statistics(outcomes.vqa, keys, ids), len(ids), resamples, seed))
    return out


def paired_differences(model: Outcomes, other: Outcomes, name: str, resamples: int, seed: int) -> dict[str, Any]:
    """``<group>/diff/<name>/...``: `model` minus `other` on the studies (questions) both scored, with paired intervals."""
    out: dict[str, Any] = {}
    common = sorted(set(model.report) & set(other.report))
    if common:
        pairs = zip(report_statistics(model.report, common).items(), report_statistics(other.report, common).values())
        out.update(_differences("report", name, {metric: _minus(a, b) for (metric, a), b in pairs}, len(common), resamples, seed))
    keys = [k for k in model.vqa if k in other.vqa]
    if keys:
        ids = _studies_of(keys)
        mine, theirs = vqa_statistics(model.vqa, keys, ids), vqa_statistics(other.vqa, keys, ids)
        out.update(_differences("vqa", name, {m: _minus(mine[m], theirs[m]) for m in mine}, len(ids), resamples, seed))
    return out


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
