"""IU X-Ray (Open-i, Indiana University) to the study manifest.

    radllm prepare iu-xray --reports NLMCXR_reports/ecgen-radiology --images NLMCXR_png --out data/iu

Input layout (the Open-i release):

* ``ecgen-radiology/<n>.xml``: one report per study, ``<uId id="CXR1"/>``, sections in
  ``<AbstractText Label="FINDINGS|IMPRESSION|INDICATION|COMPARISON">``, MeSH terms in
  ``<MeSH><major>``, and one ``<parentImage id="CXR1_1_IM-0001-3001">`` per image;
* ``NLMCXR_png/<parentImage id>.png``: the images (8- or 16-bit grayscale).

Study id: the ``uId`` ("CXR1"); the dataset has one study per patient, so it is also the
``meta.subject_id``. Report: cleaned FINDINGS and IMPRESSION (`radllm.report_text`); INDICATION
and COMPARISON go to ``meta``. Labels: IU X-Ray ships no CheXpert labels, so all 14 are blank;
the MeSH major terms are kept in ``meta.mesh_major``.

Views: Open-i has no view tag. With ``projections`` (the per-image table ``uid,filename,
projection`` distributed with the Kaggle copy of the dataset, e.g. ``1,1_IM-0001-4001.dcm.png,
Frontal``) views come from it; otherwise from mirror symmetry (`radllm.prepare.symmetry_views`,
which documents the policy). In every manifest study the first image is frontal: ``views="frontal"``
keeps the frontal image(s) only, ``views="all"`` keeps every image, frontal ones first.

Split: study-level, seeded 7:1:2 over all studies found in the reports directory (so a study's
split does not change with the view policy or with other studies being rejected), or, with
``annotation``, the split of an R2Gen-style ``annotation.json``. Its ids ("CXR2384_IM-0942") are
image ids without the last "-NNNN" block; a study matches the entries of any of its images.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from radllm.errors import RadllmError
from radllm.imaging.formats import check_pixel_count
from radllm.manifest import SPLITS, ImageRef, Report, Study
from radllm.prepare.csv_tables import read_rows
from radllm.prepare.outcome import Preparation, Reject, manifest_image_path
from radllm.prepare.split import assign_splits
from radllm.prepare.symmetry_views import FRONTAL, LATERAL, UNKNOWN, assign_views, load_gray, mirror_symmetry
from radllm.report_text import clean_report, report_text

SOURCE = "iu-xray"
VIEW_POLICIES = ("frontal", "all")
_IMAGE_TAIL = re.compile(r"IM-\d+-\d+")
_SECTION_FIELDS = {
    "FINDINGS": "findings",
    "IMPRESSION": "impression",
    "INDICATION": "indication",
    "COMPARISON": "comparison",
}


@dataclass
class IuReport:
    """The parts of one Open-i XML report that preparation uses (section texts still raw)."""

    study_id: str
    path: Path
    findings: str = ""
    impression: str = ""
    indication: str = ""
    comparison: str = ""
    image_ids: list[str] = field(default_factory=list)
    mesh_major: list[str] = field(default_factory=list)


def parse_iu_report(path: str | os.PathLike) -> IuReport:
    """Read one ``ecgen-radiology`` XML file; raises `RadllmError` naming the file if it is not XML."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise RadllmError(f"{path}: not a readable Open-i XML report ({err})") from err
    uid = root.find("uId")
    report = IuReport(study_id=(uid.get("id") if uid is not None else None) or path.stem, path=path)
    for element in root.iter("AbstractText"):
        attr = _SECTION_FIELDS.get((element.get("Label") or "").strip().upper())
        if attr:
            setattr(report, attr, "".join(element.itertext()))
    report.image_ids = [img.get("id") for img in root.iter("parentImage") if img.get("id")]
    report.mesh_major = [m.text.strip() for m in root.iter("major") if m.text and m.text.strip()]
    return report


def annotation_key(image_id: str) -> str:
    """R2Gen's study id for an image id: "CXR1_1_IM-0001-3001" -> "CXR1_1_IM-0001"."""
    return re.sub(r"-\d+$", "", image_id)


def read_annotation(path: str | os.PathLike) -> dict[str, str]:
    """Entry id -> split ("train"/"val"/"test") from an R2Gen-style annotation.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RadllmError(f"annotation {path}: not readable JSON ({err})") from err
    if not isinstance(data, dict) or set(data) - set(SPLITS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise RadllmError(f"annotation {path}: expected an object with keys from {list(SPLITS)}, found {found}")
    out: dict[str, str] = {}
    for split, entries in data.items():
        if not isinstance(entries, list):
            raise RadllmError(f"annotation {path}: '{split}' must be a list of entries")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise RadllmError(f"annotation {path}: {split}[{i}] has no string 'id'")
            if entry.get("split", split) != split:
                raise RadllmError(f"annotation {path}: {split}[{i}] ({entry['id']}) says split {entry['split']!r}")
            if out.get(entry["id"], split) != split:
                first = out[entry["id"]]
                raise RadllmError(f"annotation {path}: id {entry['id']!r} is in both {first!r} and {split!r}")
            out[entry["id"]] = split
    return out


def read_projections(path: str | os.PathLike) -> dict[tuple[str, str], str]:
    """(uid number, "IM-xxxx-xxxx") -> FRONTAL/LATERAL/UNKNOWN from an indiana_projections.csv table.

    Keyed on the report number and the image's IM block because the table's file names
    ("1_IM-0001-4001.dcm.png") and Open-i's ids ("CXR1_1_IM-0001-4001") spell the rest differently.
    """
    views = {"FRONTAL": FRONTAL, "LATERAL": LATERAL}
    out: dict[tuple[str, str], str] = {}
    for row in read_rows(path, ("uid", "filename", "projection")):
        tail = _IMAGE_TAIL.search(row["filename"])
        if tail:
            out[(row["uid"].strip(), tail.group(0))] = views.get(row["projection"].strip().upper(), UNKNOWN)
    return out


def _numeric_order(path: Path) -> tuple[bool, int, str]:
    """Sort key putting 2.xml before 10.xml (names that are not numbers last)."""
    return not path.stem.isdigit(), int(path.stem) if path.stem.isdigit() else 0, path.name


def _report_files(reports_dir: Path) -> list[Path]:
    if not reports_dir.is_dir():
        raise RadllmError(f"IU X-Ray reports directory {reports_dir} does not exist (expected ecgen-radiology/)")
    files = sorted(reports_dir.glob("*.xml"), key=_numeric_order)
    if not files:
        raise RadllmError(f"no *.xml reports in {reports_dir}")
    return files


@dataclass
class _Candidate:
    """A study that passed the report checks, waiting for its views."""

    report: IuReport
    split: str
    annotation_id: str | None
    paths: list[Path]
    views: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def _read_images(study_id: str, paths: Sequence[Path], decode: bool) -> Reject | list[float]:
    """A reject when an image is missing or unreadable; else the symmetry scores (none unless `decode`).

    Without decoding, `PIL.Image.verify` still checks each file's structure (PNG chunk CRCs).
    """
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        return Reject(study_id, "image_missing", ", ".join(missing))
    scores = []
    for p in paths:
        try:
            if decode:
                scores.append(mirror_symmetry(load_gray(p)))
            else:
                with Image.open(p) as image:
                    check_pixel_count(p, *image.size)
                    image.verify()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, RadllmError) as err:
            return Reject(study_id, "image_unreadable", f"{p.name}: {err}")
    return scores


def prepare_iu_xray(
    reports_dir: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    annotation: str | os.PathLike | None = None,
    projections: str | os.PathLike | None = None,
    seed: int = 0,
    views: str = "frontal",
    progress: bool = True,
) -> Preparation:
    """Prepare IU X-Ray into `out_dir` (manifest.jsonl, rejects.jsonl, prepare_summary.json).

    Args:
        reports_dir: the ``ecgen-radiology`` directory of XML reports.
        images_dir: the ``NLMCXR_png`` directory, images named ``<parentImage id>.png``.
        out_dir: output directory; image paths are stored relative to it when under it.
        annotation: optional R2Gen-style annotation.json whose split replaces the seeded one;
            studies it does not list are rejected as ``not_in_annotation``.
        projections: optional per-image view table (see module docstring).
        seed: seed of the 7:1:2 split (ignored with `annotation`).
        views: "frontal" (frontal images only) or "all" (every image, frontal first).
        progress: show a progress bar.

    Returns:
        The written `Preparation`.
    """
    if views not in VIEW_POLICIES:
        raise RadllmError(f"views must be one of {VIEW_POLICIES}, got {views!r}")
    reports_dir, images_dir = Path(reports_dir), Path(images_dir)
    if not images_dir.is_dir():
        raise RadllmError(f"IU X-Ray images directory {images_dir} does not exist (expected NLMCXR_png/)")
    entries = read_annotation(annotation) if annotation is not None else None
    projection_table = read_projections(projections) if projections is not None else None
    result = Preparation(
        source=SOURCE,
        options={
            "reports": str(reports_dir.resolve()),
            "images": str(images_dir.resolve()),
            "annotation": str(Path(annotation).resolve()) if annotation is not None else None,
            "projections": str(Path(projections).resolve()) if projections is not None else None,
            "seed": seed if entries is None else None,
            "views": views,
            "view_source": "projections" if projection_table is not None else "symmetry",
        },
    )

    reports = _read_reports(reports_dir, result.rejects)
    splits = assign_splits([r.study_id for r in reports], seed) if entries is None else {}
    matched: set[str] = set()
    candidates: list[_Candidate] = []
    for report in tqdm(reports, desc="iu-xray studies", unit="study", disable=not progress):
        keys = sorted({annotation_key(i) for i in report.image_ids} & set(entries or {}))
        matched.update(keys)
        reject = _check_report(report, entries, keys)
        if reject is not None:
            result.rejects.append(reject)
            continue
        candidate = _Candidate(
            report=report,
            split=entries[keys[0]] if entries is not None else splits[report.study_id],
            annotation_id=keys[0] if keys else None,
            paths=[images_dir / f"{image_id}.png" for image_id in report.image_ids],
        )
        scores = _read_images(report.study_id, candidate.paths, decode=projection_table is None)
        if isinstance(scores, Reject):
            result.rejects.append(scores)
            continue
        candidate.scores = scores
        if projection_table is not None:
            number = report.study_id.removeprefix("CXR")
            candidate.views = [_projection_view(projection_table, number, i) for i in report.image_ids]
        candidates.append(candidate)
    for entry_id in sorted(set(entries or {}) - matched):
        result.rejects.append(Reject(entry_id, "annotation_unmatched", f"annotation split {entries[entry_id]!r}"))

    if projection_table is None:
        assignment = assign_views({c.report.study_id: c.scores for c in candidates})
        for c in candidates:
            c.views = assignment.views[c.report.study_id]
        result.details["symmetry_threshold"] = assignment.threshold
    for candidate in candidates:
        study_or_reject = _build_study(candidate, views, out_dir, projection_table is None)
        (result.studies if isinstance(study_or_reject, Study) else result.rejects).append(study_or_reject)
    result.details["input_studies"] = len(reports) + sum(r.reason == "report_unreadable" for r in result.rejects)
    result.write(out_dir)
    return result


def _read_reports(reports_dir: Path, rejects: list[Reject]) -> list[IuReport]:
    """Parse every XML report; unreadable ones become rejects, a reused study id is an error."""
    reports: list[IuReport] = []
    seen: dict[str, Path] = {}
    for path in _report_files(reports_dir):
        try:
            report = parse_iu_report(path)
        except RadllmError as err:
            rejects.append(Reject(path.stem, "report_unreadable", str(err)))
            continue
        if report.study_id in seen:
            raise RadllmError(f"{path}: study id {report.study_id!r} already used by {seen[report.study_id]}")
        seen[report.study_id] = path
        reports.append(report)
    return reports


def _check_report(report: IuReport, entries: dict[str, str] | None, keys: list[str]) -> Reject | None:
    """The first report-level reason to reject a study, or None."""
    if not (clean_report(report.findings) or clean_report(report.impression)):
        return Reject(report.study_id, "no_report_text", f"{report.path.name}: FINDINGS and IMPRESSION empty")
    if not report.image_ids:
        return Reject(report.study_id, "no_images", f"{report.path.name} lists no parentImage")
    if entries is not None:
        if not keys:
            wanted = sorted({annotation_key(i) for i in report.image_ids})
            return Reject(report.study_id, "not_in_annotation", f"no entry for {wanted}")
        if len({entries[k] for k in keys}) > 1:
            return Reject(report.study_id, "annotation_conflict", ", ".join(f"{k}: {entries[k]}" for k in keys))
    return None


def _projection_view(table: dict[tuple[str, str], str], number: str, image_id: str) -> str:
    tail = _IMAGE_TAIL.search(image_id)
    return table.get((number, tail.group(0)), UNKNOWN) if tail else UNKNOWN


def _build_study(candidate: _Candidate, policy: str, out_dir: str | os.PathLike, symmetry: bool) -> Study | Reject:
    report = candidate.report
    order = sorted(range(len(candidate.views)), key=lambda i: candidate.views[i] != FRONTAL)  # frontal first, stable
    if policy == "frontal":
        order = [i for i in order if candidate.views[i] == FRONTAL]
    if not order or candidate.views[order[0]] != FRONTAL:
        detail = ", ".join(f"{i}: {v}" for i, v in zip(report.image_ids, candidate.views))
        return Reject(report.study_id, "no_frontal_view", detail)
    findings, impression = clean_report(report.findings), clean_report(report.impression)
    meta = {
        "source": SOURCE,
        "subject_id": report.study_id,
        "indication": clean_report(report.indication),
        "comparison": clean_report(report.comparison),
        "mesh_major": report.mesh_major,
        "image_ids": [report.image_ids[i] for i in order],
        "report_file": report.path.name,
    }
    if candidate.annotation_id is not None:
        meta["annotation_id"] = candidate.annotation_id
    if symmetry:
        meta["view_scores"] = [round(candidate.scores[i], 4) for i in order]
    return Study(
        study_id=report.study_id,
        images=[ImageRef(manifest_image_path(candidate.paths[i], out_dir), candidate.views[i]) for i in order],
        report=Report(findings=findings, impression=impression, text=report_text(findings, impression)),
        split=candidate.split,
        meta=meta,
    )
