"""The study manifest: one JSON object per line, shared by phantoms and every dataset preparer.

    {"study_id": "s50414267",
     "images": [{"path": "files/p10/.../abc.jpg", "view": "PA"}],
     "report": {"findings": "...", "impression": "...", "text": "FINDINGS: ... IMPRESSION: ..."},
     "labels": {"No Finding": 1, "Cardiomegaly": null, ...},      # 14 CheXpert observations
     "split": "train",                                            # train | val | test
     "meta": {...}}                                               # free-form, JSON-serialisable

One meta key has a meaning: ``meta.finding_attributes`` (`FINDING_ATTRIBUTES`), the ground-truth
side and severity of present findings, {observation: {"side": "right"|"left"|"bilateral",
"severity": "mild"|"moderate"|"severe"}} (either key optional). Phantoms write it; evaluation
checks the sides and severities of generated reports against it, and reads them from the
reference report's words where it is absent.

Image paths are stored relative to the manifest's directory when they lie under it, so a dataset
directory can be moved as a whole; `Study.image_paths(root)` resolves them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.errors import RadllmError
from radllm.jsonl import text_lines
from radllm.labels import Labels, empty_labels, validate_labels

SPLITS = ("train", "val", "test")
#: The meta key of ground-truth sides and severities (see the module docstring).
FINDING_ATTRIBUTES = "finding_attributes"
FRONTAL_VIEWS = ("PA", "AP", "AP_SUPINE", "FRONTAL")
LATERAL_VIEWS = ("LATERAL", "LL", "RL", "LAO", "RAO")


def is_frontal_view(view: str) -> bool:
    """Whether a view name (any case) is a frontal projection: the image a report is mainly written from."""
    return view.upper() in FRONTAL_VIEWS


@dataclass
class ImageRef:
    """One image of a study and its view position (PA, AP, LATERAL, ... or UNKNOWN)."""

    path: str
    view: str = "UNKNOWN"

    @property
    def is_frontal(self) -> bool:
        return is_frontal_view(self.view)


@dataclass
class Report:
    """Report sections; `text` is the full report as the model sees it."""

    findings: str = ""
    impression: str = ""
    text: str = ""


@dataclass
class Study:
    """One manifest line."""

    study_id: str
    images: list[ImageRef]
    report: Report
    labels: Labels = field(default_factory=empty_labels)
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    def image_paths(self, root: str | os.PathLike) -> list[Path]:
        """Absolute paths of the images, resolving relative ones against `root`."""
        return [Path(root, ref.path) if not os.path.isabs(ref.path) else Path(ref.path) for ref in self.images]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "study") -> "Study":
        """Validate one decoded JSON object; errors name `where` (file:line) and the bad key."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = {"study_id", "images", "report"} - set(obj)
        if missing:
            raise ValueError(f"{where}: missing key(s) {sorted(missing)}")
        extra = set(obj) - {"study_id", "images", "report", "labels", "split", "meta"}
        if extra:
            raise ValueError(f"{where}: unknown key(s) {sorted(extra)}")
        split = obj.get("split", "train")
        if split not in SPLITS:
            raise ValueError(f"{where}: split {split!r} not one of {SPLITS}")
        if not isinstance(obj["study_id"], (str, int)) or isinstance(obj["study_id"], bool) or not str(obj["study_id"]).strip():
            raise ValueError(f"{where}: 'study_id' is {obj['study_id']!r}; expected a non-empty string")
        images = obj["images"]
        if not isinstance(images, list) or not all(
            isinstance(i, dict) and isinstance(i.get("path"), str) and isinstance(i.get("view", ""), str) for i in images
        ):
            raise ValueError(f"{where}: 'images' must be a list of {{'path': string, 'view': string}} objects")
        report = obj["report"]
        if not isinstance(report, dict) or set(report) - {"findings", "impression", "text"}:
            raise ValueError(f"{where}: 'report' must be an object with findings/impression/text")
        for section, value in report.items():
            if not isinstance(value, str):
                raise ValueError(f"{where}: report.{section} is {json.dumps(value)}; expected a string (\"\" for an absent section)")
        for key in ("labels", "meta"):
            if obj.get(key) is not None and not isinstance(obj[key], dict):
                raise ValueError(f"{where}: '{key}' is a {type(obj[key]).__name__}; expected an object (or null)")
        return cls(
            study_id=str(obj["study_id"]),
            images=[ImageRef(path=i["path"], view=i.get("view", "UNKNOWN")) for i in images],
            report=Report(**report),
            labels=validate_labels(obj.get("labels") or {}, f"{where} labels"),
            split=split,
            meta=dict(obj.get("meta") or {}),
        )


def read_manifest(path: str | os.PathLike) -> list[Study]:
    """Read and validate every line; a bad line raises `RadllmError` naming file and line number."""
    return list(iter_manifest(path))


def looks_like_manifest(path: str | os.PathLike, if_unparsable: bool = False) -> bool:
    """Whether the first non-blank line of `path` is a study object (study_id, images, report object).

    Used to tell a manifest from other JSONL inputs without reading the whole file.

    Args:
        if_unparsable: the answer when that line is not JSON. True hands the file to
            `read_manifest`, whose error then names the broken line.
    """
    with open(path, encoding="utf-8") as fh:
        for _, line in text_lines(fh, path):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return if_unparsable
                return isinstance(obj, dict) and "study_id" in obj and "images" in obj and isinstance(obj.get("report"), dict)
    return False


def iter_manifest(path: str | os.PathLike) -> Iterator[Study]:
    path = Path(path)
    if not path.is_file():
        raise RadllmError(f"manifest {path} does not exist")
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in text_lines(fh, path):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                study = Study.from_json(json.loads(line), where)
            except json.JSONDecodeError as err:
                raise RadllmError(f"{where}: not valid JSON ({err.msg})") from err
            except ValueError as err:
                raise RadllmError(str(err)) from err
            if study.study_id in seen:
                raise RadllmError(f"{where}: duplicate study_id {study.study_id!r}")
            seen.add(study.study_id)
            yield study


def write_manifest(path: str | os.PathLike, studies: Iterable[Study]) -> int:
    """Atomically write studies as JSONL; returns the number written."""
    lines = [json.dumps(s.to_json(), ensure_ascii=False) for s in studies]
    atomic.write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def manifest_root(path: str | os.PathLike) -> Path:
    """Directory that relative image paths in the manifest at `path` are resolved against."""
    return Path(path).resolve().parent
