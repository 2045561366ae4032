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
from typing import Any

import numpy as np

from radllm.encoders.metrics import binary_auroc
from radllm.evaluation.clinical import binarize
from radllm.evaluation.keys import slug
from radllm.labels import OBSERVATIONS, Labels
from radllm.tasks.templates import ANSWERS


def vqa_metrics(records: Sequence[Mapping[str, Any]], truth: Mapping[str, Labels], policy: str) -> dict[str, Any]:
    """`truth` maps study id -> reference labels."""
    correct: dict[str, list[bool]] = {}
    scored: dict[str, list[tuple[float, int]]] = {}
    unscored = 0
    for record in records:
        name = record["observation"]
        label = truth[record["study_id"]].get(name)
        if label is None:
            unscored += 1
            continue
        correct.setdefault(name, []).append(record["answer"] == ANSWERS[label])
        target = binarize(label, policy)
        if target is not None:
            scored.setdefault(name, []).append((float(record["p_yes"]), target))
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
