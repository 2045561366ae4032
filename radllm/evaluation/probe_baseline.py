"""``baseline_probe``: the tokenizer's code probe as a report writer, the classifier baseline.

The code probe (`radllm.vq.probe`) is a small classifier on one image's code grid. Here it is fit
on the train split's codes and labels, its per-observation thresholds are chosen for F1 on a
validation split (never on the studies it writes for), and its binary findings are written into
the fixed `radllm.evaluation.template_report`. Its clinical F1 is what reading findings off the
codes and filling a form reaches: a report model that does not beat it gains nothing from
generating free text, and one far below it is not reading the image as well as its tokenizer
allows.

Each study is read from one view, as `radllm vq-eval` probes: the first frontal view, else view
0 (`radllm.tasks.example.select_target_view`). The probe is seeded (`ProbeConfig.seed`) and its
budget is fixed in epochs, so the file is reproducible.

Which observations are stated: every one the probe was trained on (both classes among the train
labels), as present or absent; an observation with a single train class is predicted as that
class by the probe, so it is stated present when every train study had it and left unmentioned
otherwise (it has no negative head to speak for it). The probe's own "No Finding" output is not
written: the labeler derives No Finding from the stated findings (see `template_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.evaluation.template_report import TEMPLATE, TEMPLATE_NORMAL_IMPRESSION, template_report
from radllm.labeler.labeler import NO_FINDING
from radllm.labels import Labels
from radllm.tasks.example import select_target_view
from radllm.vq.probe import PROBE_LABEL_POLICY, ProbeConfig, ProbeResult, code_probe

PROBE = "baseline_probe"
VIEW_RULE = "first frontal view, else view 0"


def probe_codes(studies: Sequence[TokenizedStudy], what: str) -> torch.Tensor:
    """int64 [N, h, w]: the codes of each study's first frontal view (else view 0).

    Raises:
        RadllmError: a study without image codes, or views of different grid sizes.
    """
    grids = []
    for study in studies:
        if not study.image_codes:
            raise RadllmError(f"{what} study {study.study_id!r} has no image codes; the probe baseline needs images")
        grids.append(np.asarray(study.image_codes[select_target_view(study.views)], dtype=np.int64))
    shapes = {g.shape for g in grids}
    if len(shapes) > 1:
        raise RadllmError(f"{what} studies have code grids of different shapes {sorted(shapes)}")
    return torch.from_numpy(np.stack(grids)) if grids else torch.zeros(0, 1, 1, dtype=torch.long)


def stated_findings(predicted: Labels, trained: Sequence[str]) -> dict[str, int]:
    """The findings a template report states for one study's probe predictions.

    Positives of any observation, negatives of the observations the probe was trained on; No
    Finding never (it is derived by the labeler).
    """
    return {
        name: int(value)
        for name, value in predicted.items()
        if name != NO_FINDING and (value == 1 or (value == 0 and name in trained))
    }


def probe_predictions(
    queries: Sequence[TokenizedStudy],
    train: Sequence[TokenizedStudy],
    threshold: Sequence[TokenizedStudy],
    codebook_size: int,
    config: ProbeConfig | None = None,
) -> tuple[list[dict[str, Any]], ProbeResult]:
    """One ``report`` record per query study from the probe fit on `train`, thresholds chosen on `threshold`.

    Records carry, besides the report, ``findings`` (what the report states, which the labeler
    reads back) and ``probabilities`` (the probe's output per trained observation).

    Raises:
        RadllmError: studies without codes, an empty split, or no observation with both classes
            among the train labels (see `code_probe`).
    """
    if not threshold:
        raise RadllmError("the probe baseline needs threshold-choice (validation) studies; the split is empty")
    result = code_probe(
        probe_codes(train, "train"), [s.labels for s in train],
        probe_codes(queries, "query"), [s.labels for s in queries],
        codebook_size, config,
        threshold_codes=probe_codes(threshold, "threshold"), threshold_labels=[s.labels for s in threshold],
    )
    records = []
    for study, predicted, probs in zip(queries, result.predictions, result.probabilities):
        findings = stated_findings(predicted, result.observations)
        records.append(
            {
                "task": "report", "study_id": study.study_id, "report": template_report(findings), "baseline": PROBE,
                "findings": findings, "probabilities": {name: float(p) for name, p in zip(result.observations, probs)},
            }
        )
    return records, result


def probe_summary(result: ProbeResult, config: ProbeConfig | None, threshold_split: str) -> dict[str, Any]:
    """How the probe baseline was made, for ``baselines.json``."""
    return {
        "method": (
            f"code probe (radllm.vq.probe) on each study's {VIEW_RULE}, fit on the reference split, per-observation "
            f"thresholds chosen for F1 on the {threshold_split!r} split; binary findings written into a fixed template report"
        ),
        "label_policy": {"uncertain": PROBE_LABEL_POLICY.uncertain, "blank": PROBE_LABEL_POLICY.blank},
        "config": asdict(config or ProbeConfig()),
        "observations": list(result.observations),
        "excluded": dict(result.excluded),
        "threshold_split": threshold_split,
        "thresholds": dict(result.thresholds),
        "threshold_split_auroc": dict(result.threshold_auroc),
        "n_fit": result.n_fit,
        "n_threshold": result.n_threshold,
        "grid": list(result.grid),
        "steps": result.steps,
        "final_loss": result.final_loss,
        "template": {name: phrases._asdict() for name, phrases in TEMPLATE.items()},
        "normal_impression": TEMPLATE_NORMAL_IMPRESSION,
    }
