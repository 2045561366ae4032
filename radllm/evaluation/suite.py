"""`evaluate`: every metric the predictions allow, written to DIR/metrics.json and DIR/report.html.

Which groups are computed depends on the tasks present in the prediction file: ``report``
records give the ``report/`` keys, ``image``/``reconstruction`` records the ``image/`` keys,
``vqa`` records the ``vqa/`` keys. ``eval/`` keys record how: the uncertain-label policy, where
reference labels came from, and the input files.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.encoders import CXREncoder, load_cxr_encoder
from radllm.errors import RadllmError
from radllm.evaluation.clinical import UNCERTAIN_POLICIES
from radllm.evaluation.images import generation_metrics, reconstruction_metrics
from radllm.evaluation.inputs import Reference, load_predictions, load_references
from radllm.evaluation.page import Sample, render_page
from radllm.evaluation.reports import reference_labels, report_metrics, resolve_label_source
from radllm.evaluation.vqa import vqa_metrics
from radllm.labeler import default_labeler

log = logging.getLogger(__name__)

METRICS_FILENAME = "metrics.json"
PAGE_FILENAME = "report.html"


@dataclass
class EvaluationOptions:
    """Everything `radllm evaluate` can be told besides its input and output paths."""

    uncertain_policy: str = "positive"
    label_source: str = "auto"  # "auto" | "labels" | "labeler"
    meteor: bool = True
    classifier: str | None = None  # CXR encoder for clinical agreement (also the default FID extractor)
    feature_extractor: str | None = None  # CXR encoder for FID features
    samples: int = 8  # studies shown in report.html
    device: str = "cpu"


def _check_ids(predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], ref_path: Path) -> None:
    unknown = sorted({r["study_id"] for records in predictions.values() for r in records} - set(references))
    if unknown:
        raise RadllmError(f"{len(unknown)} predicted study id(s) are not in the references {ref_path}, e.g. {unknown[:5]}")


def _labels_for(records: list[dict[str, Any]], references: Mapping[str, Reference], source: str) -> dict[str, dict]:
    ids = sorted({r["study_id"] for r in records})
    refs = [references[i] for i in ids]
    return dict(zip(ids, reference_labels(refs, source)))


def _encoder(path: str | None, device: str) -> CXREncoder | None:
    return None if path is None else load_cxr_encoder(path, device)


def compute_metrics(
    predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], options: EvaluationOptions
) -> dict[str, Any]:
    """The flat metrics dict (without the ``eval/`` bookkeeping keys)."""
    if options.uncertain_policy not in UNCERTAIN_POLICIES:
        raise RadllmError(f"uncertain policy {options.uncertain_policy!r} not one of {list(UNCERTAIN_POLICIES)}")
    all_records = [r for records in predictions.values() for r in records]
    source = resolve_label_source([references[i] for i in sorted({r["study_id"] for r in all_records})], options.label_source)
    metrics: dict[str, Any] = {"eval/label_source": source, "eval/uncertain_policy": options.uncertain_policy}
    if predictions.get("report"):
        metrics.update(report_metrics(predictions["report"], references, options.uncertain_policy, source, options.meteor))
    classifier = _encoder(options.classifier, options.device)
    extractor = _encoder(options.feature_extractor, options.device) if options.feature_extractor else classifier
    if predictions.get("reconstruction"):
        metrics.update(reconstruction_metrics(predictions["reconstruction"], references, classifier))
    if predictions.get("image"):
        records = predictions["image"]
        if source == "labels":
            truth = _labels_for(records, references, source)
            requested = [truth[r["study_id"]] for r in records]
        else:  # the findings the prompt asked for, read by the labeler
            labeler = default_labeler()
            requested = [labeler.label(r.get("prompt") or references[r["study_id"]].text) for r in records]
        metrics.update(generation_metrics(records, references, requested, options.uncertain_policy, extractor, classifier))
    if predictions.get("vqa"):
        truth = _labels_for(predictions["vqa"], references, source)
        metrics.update(vqa_metrics(predictions["vqa"], truth, options.uncertain_policy))
    return metrics


def finite_or_null(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Non-finite floats (PSNR of identical images is +inf) as null, so metrics.json is strict JSON."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            log.warning("%s = %s is written as null (metrics.json is strict JSON)", key, value)
            value = None
        out[key] = value
    return out


def _samples(predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], n: int) -> list[Sample]:
    reports = {r["study_id"]: r["report"] for r in predictions.get("report", [])}
    images = {r["study_id"]: r["image"] for r in predictions.get("image", [])}
    images.update({r["study_id"]: r["image"] for r in predictions.get("reconstruction", []) if r["study_id"] not in images})
    ids = sorted(set(reports) | set(images))[:n]
    return [
        Sample(
            study_id=sid,
            reference_text=references[sid].text,
            generated_text=reports.get(sid),
            reference_image=str(references[sid].images[0]) if references[sid].images else None,
            generated_image=images.get(sid),
        )
        for sid in ids
    ]


def evaluate(pred_path: str | os.PathLike, ref_path: str | os.PathLike, out_dir: str | os.PathLike, options: EvaluationOptions) -> dict[str, Any]:
    """Compute the metrics, write ``metrics.json`` and ``report.html`` into `out_dir`, return the metrics."""
    pred_path, ref_path, out_dir = Path(pred_path), Path(ref_path), Path(out_dir)
    predictions = load_predictions(pred_path)
    if not predictions:
        raise RadllmError(f"predictions {pred_path} hold no records")
    references = load_references(ref_path)
    _check_ids(predictions, references, ref_path)
    metrics = compute_metrics(predictions, references, options)
    metrics = finite_or_null(metrics)
    metrics["eval/predictions"] = str(pred_path)
    metrics["eval/references"] = str(ref_path)
    atomic.write_json(out_dir / METRICS_FILENAME, metrics)
    notes = [
        f"predictions: {pred_path}",
        f"references: {ref_path}",
        f"uncertain labels counted as: {options.uncertain_policy}; reference labels from: {metrics['eval/label_source']}",
        "Research use only; not for clinical decisions.",
    ]
    page = render_page("radllm evaluation", metrics, _samples(predictions, references, options.samples), notes)
    atomic.write_text(out_dir / PAGE_FILENAME, page)
    return metrics
