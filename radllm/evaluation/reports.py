"""Metrics of generated reports: NLG scores, clinical efficacy, coherence, side and severity (the ``report/`` keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radllm.errors import RadllmError
from radllm.evaluation.attributes import StudyAttributes, attribute_metrics, stated_attributes
from radllm.evaluation.clinical import TP, averaged_scores, clinical_efficacy, confusion_tables, pair_counts
from radllm.labeler.coherence import ReportCoherence, coherence_metrics, read_coherence
from radllm.evaluation.inputs import Reference
from radllm.labels import slug
from radllm.evaluation.nlg import nlg_metrics
from radllm.labeler.labeler import default_labeler
from radllm.labeler.model_labeler import ReportLabeler
from radllm.labels import OBSERVATIONS, Labels
from radllm.report_text import split_report_text

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


@dataclass
class ReportScores:
    """Every ``report/`` key of one prediction set, and the per-study outcomes its bootstrap resamples."""

    metrics: dict[str, Any]
    study_ids: list[str]
    counts: np.ndarray  # int [n, 14, 4] (tp, fp, fn, tn) per observation (`pair_counts`)
    strict_counts: np.ndarray  # the same, a self-contradicted observation counted as an error
    readings: list[ReportCoherence]


def section_labels(reports: Sequence[str], labeler: ReportLabeler) -> dict[str, list[Labels]]:
    """{"findings": labels of each report's findings section alone, "impression": of its impression alone}."""
    sections = [split_report_text(report) for report in reports]
    return {"findings": labeler.label_many([f for f, _ in sections]), "impression": labeler.label_many([i for _, i in sections])}


def reference_attributes(references: Sequence[Reference]) -> list[StudyAttributes]:
    """Ground-truth sides/severities of each reference, or those its report's words give."""
    rules = default_labeler()
    return [ref.attributes if ref.attributes is not None else stated_attributes(rules.mentions(ref.text)) for ref in references]


def score_reports(
    records: Sequence[Mapping[str, Any]],
    references: Mapping[str, Reference],
    policy: str,
    label_source: str,
    labeler: ReportLabeler,
    meteor: bool = True,
) -> ReportScores:
    """Every ``report/`` key of report predictions `records` against `references`, and the per-study outcomes.

    NLG scores; clinical efficacy (`clinical_efficacy`, strict keys included); coherence
    (`radllm.labeler.coherence`); ``findings_section/`` and ``impression_section/``
    ``ce_f1_{micro,macro}_present`` (each section labelled alone, over the observations present in
    the whole set); side and severity of correctly found findings (`radllm.evaluation.attributes`).
    `label_source` is one of `REPORT_LABEL_SOURCES` (checked by `check_report_label_source`).
    """
    refs = [references[r["study_id"]] for r in records]
    texts = [r["report"] for r in records]
    nlg = nlg_metrics({r["study_id"]: r["report"] for r in records}, {ref.study_id: ref.text for ref in refs}, meteor=meteor)
    predicted = labeler.label_many(texts)
    truth = reference_labels(refs, label_source, labeler)
    readings = read_coherence(texts, labeler)
    contradicted = [reading.contradicted for reading in readings]
    metrics: dict[str, Any] = {"n_studies": len(records), **nlg.scores, **clinical_efficacy(predicted, truth, policy, contradicted)}
    metrics.update({f"{name}_skipped": reason for name, reason in nlg.skipped.items()})
    metrics.update(coherence_metrics(texts, readings))
    present = [name for name in OBSERVATIONS if metrics[f"ce_n_positive/{slug(name)}"] > 0]
    for section, labels in section_labels(texts, labeler).items():
        tables = confusion_tables(labels, truth, present, policy)
        for key in ("f1_micro", "f1_macro"):
            metrics[f"{section}_section/ce_{key}_present"] = averaged_scores(tables)[key]
    counts = pair_counts(predicted, truth, OBSERVATIONS, policy)
    found = [[name for j, name in enumerate(OBSERVATIONS) if row[j, TP]] for row in counts]
    rules = default_labeler()
    metrics.update(attribute_metrics([stated_attributes(rules.mentions(t)) for t in texts], reference_attributes(refs), found))
    return ReportScores(
        metrics={f"report/{key}": value for key, value in metrics.items()},
        study_ids=[r["study_id"] for r in records],
        counts=counts,
        strict_counts=pair_counts(predicted, truth, OBSERVATIONS, policy, contradicted),
        readings=readings,
    )
