"""Metrics of generated reports: NLG scores and clinical efficacy (the ``report/`` keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from radllm.errors import RadllmError
from radllm.evaluation.clinical import averaged_scores, confusion_tables
from radllm.evaluation.inputs import Reference
from radllm.evaluation.keys import slug
from radllm.evaluation.nlg import nlg_metrics
from radllm.labeler.model_labeler import ReportLabeler
from radllm.labels import COMMON_FIVE, OBSERVATIONS, Labels

#: How the reference reports are labelled for the clinical efficacy of generated reports:
#: "labeler", the labeler that labels the generated reports (the default: one labeler on both
#: sides, so its own misses cancel instead of biasing precision or recall), or "labels", the
#: reference file's labels (e.g. MIMIC-CXR's CheXpert CSV), which mixes two labelers.
REPORT_LABEL_SOURCES = ("labeler", "labels")


def check_report_label_source(references: Sequence[Reference], requested: str) -> str:
    """`requested` if valid for these references.

    Raises:
        RadllmError: an unknown source, or "labels" with references that carry none.
    """
    if requested not in REPORT_LABEL_SOURCES:
        raise RadllmError(f"--ce-labels {requested!r}; expected one of {list(REPORT_LABEL_SOURCES)}")
    if requested == "labels" and not all(ref.labels is not None for ref in references):
        missing = [ref.study_id for ref in references if ref.labels is None][:5]
        raise RadllmError(f"--ce-labels labels: the references carry no labels for study ids such as {missing}")
    return requested


def truth_label_source(references: Sequence[Reference]) -> str:
    """Ground truth for VQA answers and requested image findings, where no labeler reads a
    prediction: the file's labels when every reference has them, else the labeler on the text."""
    return "labels" if references and all(ref.labels is not None for ref in references) else "labeler"


def reference_labels(references: Sequence[Reference], source: str, labeler: ReportLabeler) -> list[Labels]:
    """Labels of each reference from `source` ("labels": the file's, or "labeler": `labeler` on the text)."""
    if source == "labels":
        return [dict(ref.labels) for ref in references]  # type: ignore[arg-type]
    return labeler.label_many([ref.text for ref in references])


def clinical_efficacy(predicted: Sequence[Labels], reference: Sequence[Labels], policy: str) -> dict[str, float]:
    """``ce_*`` keys (without the group prefix): averages over 14, 5 and the present observations, and per-observation values.

    "present" are the observations with at least one positive reference (after the uncertain
    policy) among the scored studies: on a dataset that never shows some findings (phantoms have
    no edema) their averages are not diluted by observations nobody could get right or wrong.
    """
    tables = confusion_tables(predicted, reference, OBSERVATIONS, policy)
    present = [name for name in OBSERVATIONS if tables[name].tp + tables[name].fn > 0]
    out: dict[str, float] = {"ce_n_present": len(present)}
    for suffix, names in (("14", OBSERVATIONS), ("5", COMMON_FIVE), ("present", present)):
        for key, value in averaged_scores({n: tables[n] for n in names}).items():
            out[f"ce_{key}_{suffix}"] = value
    for name, table in tables.items():
        out[f"ce_precision/{slug(name)}"] = table.precision
        out[f"ce_recall/{slug(name)}"] = table.recall
        out[f"ce_f1/{slug(name)}"] = table.f1
        out[f"ce_n_positive/{slug(name)}"] = table.tp + table.fn
    return out


def report_metrics(
    records: Sequence[Mapping[str, Any]],
    references: Mapping[str, Reference],
    policy: str,
    label_source: str,
    labeler: ReportLabeler,
    meteor: bool = True,
) -> dict[str, Any]:
    """Every ``report/`` key for `records` (report predictions) against `references`.

    `label_source` is one of `REPORT_LABEL_SOURCES` (checked by `check_report_label_source`).
    """
    refs = [references[r["study_id"]] for r in records]
    predictions = {r["study_id"]: r["report"] for r in records}
    nlg = nlg_metrics(predictions, {ref.study_id: ref.text for ref in refs}, meteor=meteor)
    ce = clinical_efficacy(labeler.label_many([r["report"] for r in records]), reference_labels(refs, label_source, labeler), policy)
    metrics: dict[str, Any] = {"n_studies": len(records), **nlg.scores, **ce}
    metrics.update({f"{name}_skipped": reason for name, reason in nlg.skipped.items()})
    return {f"report/{key}": value for key, value in metrics.items()}
