"""`evaluate`: every metric the predictions allow, written to DIR/metrics.json and DIR/report.html.

Which groups are computed depends on the tasks present in the prediction file: ``report``
records give the ``report/`` keys, ``image``/``reconstruction`` records the ``image/`` keys,
``vqa`` records the ``vqa/`` keys. ``eval/`` keys record how: the uncertain-label policy, where
reference labels came from, and the input files. Several prediction files can be scored in one
run (a model and its baselines): the keys of a *named* file carry its name after the group
(``report/baseline_normal/ce_f1_micro_14``, see `named_keys`), so they sit beside the model's own.
With `EvaluationOptions.bootstrap` resamples, headline metrics get 95 % intervals and the unnamed
(model) set is compared with every named one by a paired bootstrap (`radllm.evaluation.intervals`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.encoders import CXREncoder, load_cxr_encoder
from radllm.errors import RadllmError
from radllm.jsonl import read_json_file
from radllm.evaluation.clinical import UNCERTAIN_POLICIES
from radllm.labeler.coherence import ReportCoherence, coherence_metrics, offending_sentences, read_coherence
from radllm.evaluation.images import absent_image_scores, reconstruction_metrics, score_generated_images
from radllm.evaluation.bootstrap import RESAMPLES
from radllm.evaluation.curves import read_runs
from radllm.evaluation.inputs import Reference, load_predictions, load_references
from radllm.evaluation.intervals import DIFF, Outcomes, own_intervals, paired_differences
from radllm.evaluation.page import FlaggedReport, Sample, render_page
from radllm.evaluation.perplexity import Perplexity
from radllm.evaluation.keys import ABSENT_IMAGES, REFERENCE
from radllm.evaluation.reports import check_report_label_source, reference_labels, score_reports, truth_label_source
from radllm.evaluation.scorers import standard_scores
from radllm.evaluation.vqa import question_outcomes, vqa_metrics
from radllm.labeler.model_labeler import ReportLabeler, load_labeler

log = logging.getLogger(__name__)

METRICS_FILENAME = "metrics.json"
PAGE_FILENAME = "report.html"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class EvaluationOptions:
    """Everything `radllm evaluate` can be told besides its input and output paths."""

    uncertain_policy: str = "positive"
    report_labels: str = "labeler"  # reference labels for report clinical efficacy: REPORT_LABEL_SOURCES
    labeler: str | None = None  # a model directory to label reports with (radllm.labeler.model_labeler); None = the rules
    meteor: bool = True
    classifier: str | None = None  # CXR encoder for clinical agreement (also the default FID extractor)
    feature_extractor: str | None = None  # CXR encoder for FID features
    samples: int = 8  # studies shown in report.html
    device: str = "cpu"
    bootstrap: int = RESAMPLES  # resamples of the paired bootstrap (radllm.evaluation.intervals); 0 = no intervals
    bootstrap_seed: int = 0
    scorers: tuple[str, ...] = ()  # papers' report scorers (radllm.evaluation.scorers.SCORERS), e.g. ("chexbert", "radgraph")
    scorer_weights: str | None = None  # their weights directory (--scorer-weights); None = the Hugging Face cache


def _check_ids(predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], ref_path: Path) -> None:
    unknown = sorted({r["study_id"] for records in predictions.values() for r in records} - set(references))
    if unknown:
        raise RadllmError(f"{len(unknown)} predicted study id(s) are not in the references {ref_path}, e.g. {unknown[:5]}")


def _labels_for(records: list[dict[str, Any]], references: Mapping[str, Reference], source: str, labeler: ReportLabeler) -> dict[str, dict]:
    ids = sorted({r["study_id"] for r in records})
    refs = [references[i] for i in ids]
    return dict(zip(ids, reference_labels(refs, source, labeler)))


def _encoder(path: str | None, device: str) -> CXREncoder | None:
    return None if path is None else load_cxr_encoder(path, device)


@dataclass
class SetScores:
    """One prediction set scored: its flat metrics, the outcomes its bootstrap resamples, and the
    coherence readings of its reports (report.html lists the flagged ones)."""

    metrics: dict[str, Any]
    outcomes: Outcomes
    readings: dict[str, ReportCoherence] = field(default_factory=dict)  # study id -> reading
    absent_images: SetScores | None = None  # image/baseline_absent: the same requests, an image showing nothing


def score_set(predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], options: EvaluationOptions) -> SetScores:
    """Score one prediction set (records grouped by task): metrics without the ``eval/`` file keys, and outcomes."""
    if options.uncertain_policy not in UNCERTAIN_POLICIES:
        raise RadllmError(f"uncertain policy {options.uncertain_policy!r} not one of {list(UNCERTAIN_POLICIES)}")
    all_records = [r for records in predictions.values() for r in records]
    scored = [references[i] for i in sorted({r["study_id"] for r in all_records})]
    source = truth_label_source(scored)
    labeler = load_labeler(options.labeler, options.device)
    metrics: dict[str, Any] = {"eval/truth_labels": source, "eval/uncertain_policy": options.uncertain_policy, "eval/labeler": labeler.identity}
    result = SetScores(metrics, Outcomes())
    if predictions.get("report"):
        _score_reports(result, predictions["report"], references, scored, labeler, options)
    classifier = _encoder(options.classifier, options.device)
    if predictions.get("reconstruction"):
        metrics.update(reconstruction_metrics(predictions["reconstruction"], references, classifier))
    if predictions.get("image"):
        records = predictions["image"]
        if source == "labels":
            truth = _labels_for(records, references, source, labeler)
            requested = [truth[r["study_id"]] for r in records]
        else:  # the findings the prompt asked for, read by the labeler
            requested = labeler.label_many([r.get("prompt") or references[r["study_id"]].text for r in records])
        extractor = _encoder(options.feature_extractor, options.device) if options.feature_extractor else classifier
        images = score_generated_images(records, references, requested, options.uncertain_policy, extractor, classifier)
        metrics.update(images.metrics)
        result.outcomes.image = images.counts
        if classifier is not None:
            absent = absent_image_scores([r["study_id"] for r in records], requested, classifier.label_names, options.uncertain_policy)
            result.absent_images = SetScores(absent.metrics, Outcomes(image=absent.counts))
    if predictions.get("vqa"):
        truth = _labels_for(predictions["vqa"], references, source, labeler)
        metrics.update(vqa_metrics(predictions["vqa"], truth, options.uncertain_policy))
        for record, outcome in zip(predictions["vqa"], question_outcomes(predictions["vqa"], truth, options.uncertain_policy)):
            result.outcomes.vqa[(record["study_id"], record["observation"], record.get("question"))] = outcome
    return result


def _score_reports(
    result: SetScores, records: list[dict[str, Any]], references: Mapping[str, Reference], scored: Sequence[Reference],
    labeler: ReportLabeler, options: EvaluationOptions,
) -> None:
    """The ``report/`` keys, outcomes and coherence readings of `records` into `result`."""
    report_source = check_report_label_source(scored, options.report_labels)
    result.metrics["eval/report_reference_labels"] = report_source
    if report_source == "labels":
        log.warning("clinical efficacy mixes two labelers: reference reports by the labels in the reference file, generated "
                    "reports by %s; their disagreement biases precision and recall (default: --ce-labels labeler)", labeler.identity)
    reports = score_reports(records, references, options.uncertain_policy, report_source, labeler, options.meteor)
    result.metrics.update(reports.metrics)
    if options.scorers:  # CheXbert / RadGraph F1 / BERTScore as papers compute them, generated vs reference text
        found = standard_scores(options.scorers, [r["report"] for r in records], [references[r["study_id"]].text for r in records],
                                options.scorer_weights, options.device)
        result.metrics.update({f"report/{key}": value for key, value in found.items()})
    result.outcomes.report = dict(zip(reports.study_ids, reports.counts))
    result.outcomes.report_strict = dict(zip(reports.study_ids, reports.strict_counts))
    result.readings = dict(zip(reports.study_ids, reports.readings))
    result.outcomes.contradicted = {sid: bool(r.contradictions) for sid, r in result.readings.items()}


def compute_metrics(
    predictions: Mapping[str, list[dict[str, Any]]], references: Mapping[str, Reference], options: EvaluationOptions
) -> dict[str, Any]:
    """The flat metrics dict (without the ``eval/`` file keys) of one prediction set."""
    return score_set(predictions, references, options).metrics


def reference_coherence(references: Sequence[Reference], labeler: ReportLabeler) -> dict[str, Any]:
    """``report/reference/...`` coherence keys of the reference reports: what a sound report scores."""
    texts = [ref.text for ref in references]
    return {f"report/{REFERENCE}/{key}": value for key, value in coherence_metrics(texts, read_coherence(texts, labeler)).items()}


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


def flagged_reports(predictions: Mapping[str, list[dict[str, Any]]], readings: Mapping[str, ReportCoherence]) -> list[FlaggedReport]:
    """The reports that contradict themselves or repeat a sentence, with the offending sentences marked."""
    flagged = []
    for record in predictions.get("report", []):
        reading = readings[record["study_id"]]
        marks = offending_sentences(reading)
        if marks:
            flagged.append(FlaggedReport(record["study_id"], [(s.section, s.text, marks.get(i)) for i, s in enumerate(reading.sentences)]))
    return flagged


def _check_name(name: str, reserved: bool = True) -> None:
    if name and not _NAME.match(name):
        raise RadllmError(f"prediction name {name!r}: use letters, digits, '_', '.' or '-' (it becomes part of metric keys)")
    if reserved and name in (DIFF, REFERENCE, ABSENT_IMAGES):
        raise RadllmError(f"prediction name {name!r} is reserved (for paired differences <group>/{DIFF}/<name>/..., the reference "
                          f"reports' coherence report/{REFERENCE}/..., the all-absent image baseline image/{ABSENT_IMAGES}/...)")


def named_keys(metrics: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``<group>/<rest>`` -> ``<group>/<name>/<rest>`` for every key (``""``: unchanged).

    Raises:
        RadllmError: a name that is not letters, digits, ``_``, ``.`` or ``-``.
    """
    if not name:
        return dict(metrics)
    _check_name(name, reserved=False)
    out = {}
    for key, value in metrics.items():
        group, _, rest = key.partition("/")
        out[f"{group}/{name}/{rest}"] = value
    return out


PredictionPaths = str | os.PathLike | Sequence[str | os.PathLike]
PredictionFiles = Mapping[str, PredictionPaths]  # name ("" = unnamed) -> prediction JSONL(s)


def load_prediction_files(paths: PredictionPaths) -> dict[str, list[dict[str, Any]]]:
    """Records of one or more prediction files grouped by task (e.g. reports, images and VQA of one model).

    Raises:
        RadllmError: two files hold records of the same task, or none holds any record.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    merged: dict[str, list[dict[str, Any]]] = {}
    origin: dict[str, Path] = {}
    for path in map(Path, paths):
        for task, records in load_predictions(path).items():
            if task in merged:
                raise RadllmError(f"predictions {origin[task]} and {path} both hold {task} records; give them different names")
            merged[task], origin[task] = records, path
    if not merged:
        raise RadllmError(f"predictions {', '.join(map(str, paths))} hold no records")
    return merged


def perplexity_metrics(files: Mapping[str, str | os.PathLike]) -> dict[str, Any]:
    """``perplexity/<name>`` (and ``/nll``, ``/n_tokens``, ``/model``) from `radllm perplexity` JSON files.

    Raises:
        RadllmError: a bad name, or a file that is missing or not a `Perplexity` record.
    """
    out: dict[str, Any] = {}
    for name, path in files.items():
        if not name or not _NAME.match(name):
            raise RadllmError(f"perplexity name {name!r}: use letters, digits, '_', '.' or '-' (it becomes part of metric keys)")
        raw = read_json_file(path, "perplexity file")
        try:
            result = Perplexity(**raw)
        except TypeError as err:
            raise RadllmError(f"perplexity file {path}: not the JSON `radllm perplexity` writes ({err})") from err
        out.update({f"perplexity/{name}": result.perplexity, f"perplexity/{name}/nll": result.nll,
                    f"perplexity/{name}/n_tokens": result.n_tokens, f"perplexity/{name}/model": result.model})
    return out


def _describe(paths: PredictionPaths) -> str:
    return str(paths) if isinstance(paths, (str, os.PathLike)) else ", ".join(map(str, paths))


def evaluate(
    pred_path: str | os.PathLike | PredictionFiles,
    ref_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: EvaluationOptions,
    perplexity: Mapping[str, str | os.PathLike] | None = None,
    run_dirs: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, Any]:
    """Compute the metrics, write ``metrics.json`` and ``report.html`` into `out_dir`, return the metrics.

    Args:
        pred_path: one prediction JSONL, or several as {name: path or [paths]}; the files named
            ``""`` keep the plain keys, every other name's keys get that name (`named_keys`). The
            files of one name are scored together and must hold different tasks (a model's
            reports, images and VQA answers). report.html shows the samples of ``""`` (else of the
            first name).
        perplexity: {name: JSON of `radllm perplexity`} copied in as ``perplexity/<name>`` keys,
            so one file holds a run's held-out perplexities beside its generation metrics.
        run_dirs: {name: training run_dir} whose metrics.jsonl report.html draws as learning curves.
    """
    files = {"": pred_path} if isinstance(pred_path, (str, os.PathLike)) else dict(pred_path)
    if not files:
        raise RadllmError("no prediction files given")
    for name in files:
        _check_name(name)
    ref_path, out_dir = Path(ref_path), Path(out_dir)
    references = load_references(ref_path)
    runs = read_runs(run_dirs or {})  # before the slow part: a wrong --run-dir fails at once
    perplexities = perplexity_metrics(perplexity or {})  # likewise a bad --perplexity file
    if options.bootstrap < 0:
        raise RadllmError(f"--bootstrap {options.bootstrap}; expected a number of resamples >= 0 (0 = off)")
    metrics: dict[str, Any] = {}
    loaded: dict[str, dict[str, list[dict[str, Any]]]] = {}
    scores: dict[str, SetScores] = {}
    sources: set[str] = set()
    for name, paths in files.items():
        predictions = load_prediction_files(paths)
        _check_ids(predictions, references, ref_path)
        scores[name] = score_set(predictions, references, options)
        found = scores[name].metrics
        if "eval/report_reference_labels" in found:
            sources.add(f"reports: {found['eval/report_reference_labels']}")
        sources.add(f"VQA/images: {found['eval/truth_labels']}")
        found["eval/predictions"] = _describe(paths)
        loaded[name] = predictions
    model = scores.get("")
    if model is not None and model.absent_images is not None:  # generated images against an image that shows nothing
        scores[ABSENT_IMAGES] = model.absent_images
        scores[ABSENT_IMAGES].metrics["eval/predictions"] = "an image in which the classifier finds none of the requested findings"
    for name, scored in scores.items():
        if options.bootstrap:
            scored.metrics.update(own_intervals(scored.outcomes, options.bootstrap, options.bootstrap_seed))
        metrics.update(named_keys(finite_or_null(scored.metrics), name))
    if options.bootstrap and model is not None:  # the model against every named set: baselines and controls
        for name in (n for n in scores if n):
            metrics.update(finite_or_null(paired_differences(model.outcomes, scores[name].outcomes, name, options.bootstrap, options.bootstrap_seed)))
    report_ids = sorted({r["study_id"] for predictions in loaded.values() for r in predictions.get("report", [])})
    if report_ids:
        metrics.update(reference_coherence([references[i] for i in report_ids], load_labeler(options.labeler, options.device)))
    if options.bootstrap:
        metrics.update({"eval/bootstrap": options.bootstrap, "eval/bootstrap_seed": options.bootstrap_seed})
    metrics.update(perplexities)
    metrics["eval/references"] = str(ref_path)
    atomic.write_json(out_dir / METRICS_FILENAME, metrics)
    notes = [
        "predictions: " + ", ".join(f"{name}={_describe(paths)}" if name else _describe(paths) for name, paths in files.items()),
        f"references: {ref_path}",
        f"uncertain labels counted as: {options.uncertain_policy}; reference labels ({load_labeler(options.labeler, options.device).identity} = the labeler, "
        f"labels = the reference file's): {'; '.join(sorted(sources))}",
        "Research use only; not for clinical decisions.",
    ]
    shown_name = "" if "" in loaded else next(iter(loaded))
    if runs:
        notes.insert(-1, "training runs: " + ", ".join(f"{name}={path}" for name, path in (run_dirs or {}).items()))
    page = render_page("radllm evaluation", metrics, _samples(loaded[shown_name], references, options.samples), notes, runs,
                       flagged_reports(loaded[shown_name], scores[shown_name].readings))
    atomic.write_text(out_dir / PAGE_FILENAME, page)
    return metrics
