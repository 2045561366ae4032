"""VQA metrics (the ``vqa/`` keys): answer accuracy and AUROC of p(yes), per observation and overall.

The truth of a question is the reference label of its (study, observation): from the reference
file's labels or the labeler on the reference report, the same source clinical efficacy uses.
Questions whose truth is blank are not scored (``vqa/n_unscored``). Accuracy compares the
three-way answer (yes / no / uncertain) with the label's answer. AUROC scores ``p_yes`` against
the binarised truth under the uncertain policy (`radllm.evaluation.clinical.binarize`); it is
null where an observation has only one class. ``auroc_micro`` pools every scored question,
``auroc_macro`` averages the defined per-observation values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radllm.encoders.metrics import binary_auroc
from radllm.evaluation.clinical import binarize
from radllm.labels import slug
from radllm.labels import OBSERVATIONS, Labels
from radllm.tasks import ANSWERS


@dataclass(frozen=True)
class QuestionOutcome:
    """How one answered question scores: what accuracy and AUROC count (also per study, for the bootstrap)."""

    study_id: str
    observation: str
    correct: bool | None  # None: the truth is blank (unscored)
    p_yes: float
    target: int | None  # binarised truth for AUROC; None: blank, or uncertain under policy "ignore"


def question_outcomes(records: Sequence[Mapping[str, Any]], truth: Mapping[str, Labels], policy: str) -> list[QuestionOutcome]:
    """One outcome per record, in record order; `truth` maps study id -> reference labels."""
    outcomes = []
    for record in records:
        label = truth[record["study_id"]].get(record["observation"])
        outcomes.append(QuestionOutcome(
            record["study_id"], record["observation"], None if label is None else record["answer"] == ANSWERS[label],
            float(record["p_yes"]), None if label is None else binarize(label, policy),
        ))
    return outcomes


def vqa_metrics(records: Sequence[Mapping[str, Any]], truth: Mapping[str, Labels], policy: str) -> dict[str, Any]:
    """`truth` maps study id -> reference labels."""
    correct: dict[str, list[bool]] = {}
    scored: dict[str, list[tuple[float, int]]] = {}
    unscored = 0
    for outcome in question_outcomes(records, truth, policy):
        if outcome.correct is None:
            unscored += 1
            continue
        correct.setdefault(outcome.observation, []).append(outcome.correct)
        if outcome.target is not None:
            scored.setdefault(outcome.observation, []).append((outcome.p_yes, outcome.target))
    metrics: dict[str, Any] = {"n": len(records), "n_unscored": unscored}
    all_correct = [c for values in correct.values() for c in values]
    metrics["accuracy"] = float(np.mean(all_correct)) if all_correct else None
    pooled = [pair for values in scored.values() for pair in values]
    metrics["auroc_micro"] = _auroc(pooled)
    per_observation = {}
    for name in OBSERVATIONS:
        if name in correct:
            metrics[f"accuracy/{slug(name)}"] = float(np.mean(correct[name]))
        if name in scored:
            per_observation[name] = metrics[f"auroc/{slug(name)}"] = _auroc(scored[name])
    defined = [v for v in per_observation.values() if v is not None]
    metrics["auroc_macro"] = float(np.mean(defined)) if defined else None
    return {f"vqa/{key}": value for key, value in metrics.items()}


def _auroc(pairs: list[tuple[float, int]]) -> float | None:
    if not pairs:
        return None
    scores, targets = zip(*pairs)
    return binary_auroc(np.array(scores), np.array(targets))
