"""What `radllm evaluate` reads: prediction JSONL (written by `radllm generate`) and references.

Predictions, one object per line, grouped by ``task`` (see the README, "Evaluation"):
    report:         {"task": "report", "study_id", "report"}
    image:          {"task": "image", "study_id", "image" (path relative to the JSONL), "prompt"?}
    reconstruction: {"task": "reconstruction", "study_id", "image"}   (VQ-GAN round trips)
    vqa:            {"task": "vqa", "study_id", "observation", "answer", "p_yes"}
References: a `radllm.manifest` file (report, labels, image paths), or a JSONL with ``study_id``,
``report`` or ``text``, and optionally ``labels`` and ``image``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError
from radllm.evaluation.attributes import StudyAttributes, ground_truth_attributes
from radllm.jsonl import iter_json_objects
from radllm.labels import OBSERVATIONS, Labels, validate_labels
from radllm.manifest import FINDING_ATTRIBUTES, iter_manifest, looks_like_manifest, manifest_root
from radllm.report_text import report_text
from radllm.tasks import ANSWERS

TASKS = ("report", "image", "reconstruction", "vqa")
_REQUIRED = {
    "report": ("study_id", "report"),
    "image": ("study_id", "image"),
    "reconstruction": ("study_id", "image"),
    "vqa": ("study_id", "observation", "answer", "p_yes"),
}


@dataclass
class Reference:
    """The ground truth of one study."""

    study_id: str
    text: str
    labels: Labels | None = None  # None: the reference file has no labels for this study
    images: list[Path] = field(default_factory=list)  # absolute paths, frontal view first
    attributes: StudyAttributes | None = None  # ground-truth sides/severities (manifest meta.finding_attributes); None: read from the text


def _read_jsonl(path: Path, what: str) -> list[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise RadllmError(f"{what} {path} does not exist or is not a file")
    with open(path, encoding="utf-8") as fh:
        return [(f"{path}:{lineno}", obj) for lineno, obj in iter_json_objects(fh, path)]


def load_references(path: str | os.PathLike) -> dict[str, Reference]:
    """References by study id, from a manifest or a plain JSONL (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise RadllmError(f"references {path} do not exist or are not a file")
    if looks_like_manifest(path):
        root = manifest_root(path)
        refs = {}
        for study in iter_manifest(path):
            text = study.report.text or report_text(study.report.findings, study.report.impression)
            pairs = sorted(zip(study.images, study.image_paths(root)), key=lambda pair: not pair[0].is_frontal)
            paths = [image_path for _ref, image_path in pairs]
            has_labels = any(v is not None for v in study.labels.values())
            attributes = study.meta.get(FINDING_ATTRIBUTES)
            if attributes is not None:
                attributes = ground_truth_attributes(attributes, f"{path} study {study.study_id}")
            refs[study.study_id] = Reference(study.study_id, text, dict(study.labels) if has_labels else None, paths, attributes)
        return refs
    refs = {}
    for where, obj in _read_jsonl(path, "references"):
        if "study_id" not in obj:
            raise RadllmError(f"{where}: missing 'study_id'")
        sid = str(obj["study_id"])
        if sid in refs:
            raise RadllmError(f"{where}: duplicate study_id {sid!r}")
        text = obj.get("report", obj.get("text"))
        if not isinstance(text, str):
            raise RadllmError(f"{where}: expected the reference report as a string under 'report' or 'text'")
        labels = None
        if obj.get("labels") is not None:
            try:
                labels = validate_labels(obj["labels"], f"{where} labels")
            except ValueError as err:
                raise RadllmError(str(err)) from err
        images = [path.parent / obj["image"]] if isinstance(obj.get("image"), str) else []
        refs[sid] = Reference(sid, text, labels, images)
    return refs


def load_predictions(path: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Prediction records grouped by task, validated; image paths made absolute.

    Raises:
        RadllmError: unknown task, missing field, bad value, or a study predicted twice for the
            same task (and, for VQA, the same observation).
    """
    path = Path(path)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple] = set()
    for where, obj in _read_jsonl(path, "predictions"):
        task = obj.get("task")
        if task not in TASKS:
            raise RadllmError(f"{where}: task {task!r}; expected one of {list(TASKS)}")
        missing = [k for k in _REQUIRED[task] if k not in obj]
        if missing:
            raise RadllmError(f"{where}: {task} record lacks {missing}")
        record = dict(obj, study_id=str(obj["study_id"]))
        key: tuple = (task, record["study_id"])
        if task == "vqa":
            if record["observation"] not in OBSERVATIONS:
                raise RadllmError(f"{where}: observation {record['observation']!r} is not a CheXpert observation {list(OBSERVATIONS)}")
            if record["answer"] not in ANSWERS.values():
                raise RadllmError(f"{where}: answer {record['answer']!r}; expected one of {sorted(ANSWERS.values())}")
            p_yes = record["p_yes"]
            if not isinstance(p_yes, (int, float)) or not 0.0 <= float(p_yes) <= 1.0:
                raise RadllmError(f"{where}: p_yes {p_yes!r}; expected a probability in [0, 1]")
            key += (record["observation"], record.get("question"))
        elif task == "report" and not isinstance(record["report"], str):
            raise RadllmError(f"{where}: 'report' must be a string")
        elif task in ("image", "reconstruction"):
            record["image"] = str(path.parent / str(record["image"]))
        if key in seen:
            raise RadllmError(f"{where}: duplicate {task} prediction for study {record['study_id']!r}")
        seen.add(key)
        grouped[task].append(record)
    return dict(grouped)
