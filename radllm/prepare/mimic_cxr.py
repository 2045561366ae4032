"""MIMIC-CXR-JPG (with the MIMIC-CXR free-text reports) to the study manifest.

    radllm prepare mimic-cxr --root mimic-cxr-jpg/2.0.0 --reports mimic-cxr/2.0.0 --out data/mimic

Inputs under `root` (the MIMIC-CXR-JPG release):

* ``mimic-cxr-2.0.0-metadata.csv[.gz]``: one row per image (dicom_id, subject_id, study_id,
  ViewPosition, StudyDate, ...);
* ``mimic-cxr-2.0.0-split.csv[.gz]``: the official split per image (train / validate / test,
  written here as train / val / test);
* ``mimic-cxr-2.0.0-chexpert.csv[.gz]`` (optional): the 14 CheXpert labels per study
  (1.0 / 0.0 / -1.0 / blank); without it every label is blank;
* ``files/p10/p10000032/s50414267/<dicom_id>.jpg``: the images.

Reports come from ``<reports_root>/files/p10/p10000032/s50414267.txt`` (the MIMIC-CXR release;
`reports_root` defaults to `root`) and are split into sections by `radllm.report_text`.

Views: ``views="frontal"`` keeps the PA and AP images, ``"frontal+lateral"`` also LATERAL and LL;
other positions (oblique, decubitus, missing) are never used and are counted in the summary.
Either way a study needs at least one frontal image, and frontal images come first (PA before
AP, then LATERAL before LL, ties by dicom_id), so the first image of every study is frontal.
Study ids are "s<study_id>" and ``meta.subject_id`` is "p<subject_id>", as in the folder names.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, Labels, empty_labels, validate_labels
from radllm.manifest import ImageRef, Report, Study
from radllm.prepare.csv_tables import find_table, read_rows
from radllm.prepare.outcome import Preparation, Reject, manifest_image_path
from radllm.report_text import (
    COMPARISON,
    INDICATION,
    clean_report,
    extract_sections,
    findings_and_impression,
    report_text,
)

SOURCE = "mimic-cxr"
METADATA_TABLE = "mimic-cxr-2.0.0-metadata"
SPLIT_TABLE = "mimic-cxr-2.0.0-split"
CHEXPERT_TABLE = "mimic-cxr-2.0.0-chexpert"
FRONTAL_POSITIONS = ("PA", "AP")
LATERAL_POSITIONS = ("LATERAL", "LL")
VIEW_POLICIES = ("frontal", "frontal+lateral")
_SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}

StudyKey = tuple[str, str]  # (subject_id, study_id) as digits, e.g. ("10000032", "50414267")


@dataclass
class _Image:
    dicom_id: str
    view: str  # ViewPosition, upper case; "" when missing


@dataclass
class _Accepted:
    """A study that passed every check: images to use in order and its report sections."""

    images: list[_Image]
    sections: dict[str, str]
    findings: str
    impression: str


@dataclass
class _StudyRecord:
    images: list[_Image] = field(default_factory=list)
    study_date: str = ""


def study_dir(subject_id: str, study_id: str) -> Path:
    """Relative folder of a study: files/p10/p10000032/s50414267."""
    return Path("files", f"p{subject_id[:2]}", f"p{subject_id}", f"s{study_id}")


def read_metadata(path: str | os.PathLike) -> dict[StudyKey, _StudyRecord]:
    """Images of each study from the metadata table, in file order."""
    studies: dict[StudyKey, _StudyRecord] = defaultdict(_StudyRecord)
    for row in read_rows(path, ("dicom_id", "subject_id", "study_id", "ViewPosition")):
        record = studies[(row["subject_id"].strip(), row["study_id"].strip())]
        record.images.append(_Image(row["dicom_id"].strip(), row["ViewPosition"].strip().upper()))
        record.study_date = row.get("StudyDate", "").strip() or record.study_date
    return dict(studies)


def read_official_split(path: str | os.PathLike) -> dict[StudyKey, set[str]]:
    """Split name(s) of each study (a set: a study split across names is a data error to report)."""
    splits: dict[StudyKey, set[str]] = defaultdict(set)
    for lineno, row in enumerate(read_rows(path, ("dicom_id", "study_id", "subject_id", "split")), 2):
        name = _SPLIT_NAMES.get(row["split"].strip().lower())
        if name is None:
            raise RadllmError(f"{path}:{lineno}: split {row['split']!r}; expected train, validate or test")
        splits[(row["subject_id"].strip(), row["study_id"].strip())].add(name)
    return dict(splits)


def read_chexpert(path: str | os.PathLike) -> dict[StudyKey, Labels]:
    """The 14 labels of each study; blank cells are None, "1.0"/"0.0"/"-1.0" become 1/0/-1."""
    out: dict[StudyKey, Labels] = {}
    for lineno, row in enumerate(read_rows(path, ("subject_id", "study_id", *OBSERVATIONS)), 2):
        where = f"{path}:{lineno}"
        raw = {name: row[name].strip() for name in OBSERVATIONS}
        try:
            values = {name: (float(v) if v else None) for name, v in raw.items()}
            out[(row["subject_id"].strip(), row["study_id"].strip())] = validate_labels(values, where)
        except ValueError as err:
            raise RadllmError(f"{where}: bad label value in {raw} ({err})") from err
    return out


def _view_rank(image: _Image) -> tuple[int, str]:
    order = FRONTAL_POSITIONS + LATERAL_POSITIONS
    return order.index(image.view), image.dicom_id


def prepare_mimic_cxr(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    reports_root: str | os.PathLike | None = None,
    views: str = "frontal",
    progress: bool = True,
) -> Preparation:
    """Prepare MIMIC-CXR-JPG into `out_dir` (manifest.jsonl, rejects.jsonl, prepare_summary.json).

    Args:
        root: the MIMIC-CXR-JPG root (tables and ``files/``).
        out_dir: output directory; image paths are stored relative to it when under it.
        reports_root: root holding ``files/pXX/pNNNNNNNN/sNNNNNNNN.txt``; defaults to `root`.
        views: "frontal" (PA/AP) or "frontal+lateral" (PA/AP/LATERAL/LL).
        progress: show a progress bar.

    Returns:
        The written `Preparation`.
    """
    if views not in VIEW_POLICIES:
        raise RadllmError(f"views must be one of {VIEW_POLICIES}, got {views!r}")
    root = Path(root)
    reports_root = Path(reports_root) if reports_root is not None else root
    if not root.is_dir():
        raise RadllmError(f"MIMIC-CXR-JPG root {root} does not exist")
    if not reports_root.is_dir():
        raise RadllmError(f"MIMIC-CXR reports root {reports_root} does not exist")
    metadata = read_metadata(find_table(root, METADATA_TABLE))
    splits = read_official_split(find_table(root, SPLIT_TABLE))
    chexpert_path = find_table(root, CHEXPERT_TABLE, required=False)
    labels = read_chexpert(chexpert_path) if chexpert_path is not None else None
    positions = FRONTAL_POSITIONS + (LATERAL_POSITIONS if views == "frontal+lateral" else ())

    result = Preparation(
        source=SOURCE,
        options={
            "root": str(root.resolve()),
            "reports": str(reports_root.resolve()),
            "views": views,
            "labels": str(chexpert_path.resolve()) if chexpert_path is not None else None,
        },
    )
    skipped_views: Counter[str] = Counter()
    unlabelled = 0
    keys = sorted(set(metadata) | set(splits))  # ids are fixed-width digits: string order is numeric
    for key in tqdm(keys, desc="mimic-cxr studies", unit="study", disable=not progress):
        subject_id, study_number = key
        study_id = f"s{study_number}"
        checked = _check_study(key, metadata, splits, positions, root, reports_root)
        if isinstance(checked, Reject):
            result.rejects.append(checked)
            continue
        record = metadata[key]
        skipped_views.update(image.view or "(missing)" for image in record.images if image.view not in positions)
        findings, impression, sections = checked.findings, checked.impression, checked.sections
        study_labels = labels.get(key) if labels is not None else None
        unlabelled += labels is not None and study_labels is None
        folder = root / study_dir(subject_id, study_number)
        result.studies.append(
            Study(
                study_id=study_id,
                images=[
                    ImageRef(manifest_image_path(folder / f"{i.dicom_id}.jpg", out_dir), i.view) for i in checked.images
                ],
                report=Report(findings=findings, impression=impression, text=report_text(findings, impression)),
                labels=study_labels or empty_labels(),
                split=next(iter(splits[key])),
                meta={
                    "source": SOURCE,
                    "subject_id": f"p{subject_id}",
                    "study_date": record.study_date,
                    "indication": clean_report(sections.get(INDICATION, "")),
                    "comparison": clean_report(sections.get(COMPARISON, "")),
                    "dicom_ids": [i.dicom_id for i in checked.images],
                },
            )
        )
    result.details.update(
        input_studies=len(keys),
        images_not_used_by_view=dict(sorted(skipped_views.items())),
        studies_without_labels=unlabelled if labels is not None else None,
    )
    result.write(out_dir)
    return result


def _check_study(
    key: StudyKey,
    metadata: dict[StudyKey, _StudyRecord],
    splits: dict[StudyKey, set[str]],
    positions: tuple[str, ...],
    root: Path,
    reports_root: Path,
) -> Reject | _Accepted:
    """The first reason to reject a study (checks cheapest first), or what the manifest needs."""
    subject_id, study_number = key
    study_id = f"s{study_number}"
    if key not in metadata:
        return Reject(study_id, "no_metadata", f"subject p{subject_id}")
    if key not in splits:
        return Reject(study_id, "no_split", f"subject p{subject_id}")
    if len(splits[key]) > 1:
        return Reject(study_id, "split_conflict", ", ".join(sorted(splits[key])))
    images = metadata[key].images
    selected = sorted((i for i in images if i.view in positions), key=_view_rank)
    if not selected or selected[0].view not in FRONTAL_POSITIONS:
        found = ", ".join(f"{i.dicom_id}: {i.view or '(missing)'}" for i in images)
        return Reject(study_id, "no_frontal_view", found)
    report_path = reports_root / study_dir(subject_id, study_number).with_suffix(".txt")
    if not report_path.is_file():
        return Reject(study_id, "report_missing", str(report_path))
    try:
        report = report_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return Reject(study_id, "report_unreadable", f"{report_path}: {err}")
    sections = extract_sections(report)
    findings, impression = findings_and_impression(sections)
    if not (findings or impression):
        return Reject(study_id, "no_report_text", f"{report_path.name}: no FINDINGS or IMPRESSION section")
    folder = root / study_dir(subject_id, study_number)
    missing = [f"{i.dicom_id}.jpg" for i in selected if not (folder / f"{i.dicom_id}.jpg").is_file()]
    if missing:
        return Reject(study_id, "image_missing", f"{folder}: {', '.join(missing)}")
    return _Accepted(selected, sections, findings, impression)
