"""What a preparer produces: accepted studies, rejected studies with reasons, and a summary.

Keeping the rejects as data (not log lines) is what lets a user see *why* 3,955 IU X-Ray reports
became 3,3xx manifest studies, and lets tests assert the exact list.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.manifest import SPLITS, Study, write_manifest

MANIFEST_NAME = "manifest.jsonl"
REJECTS_NAME = "rejects.jsonl"
SUMMARY_NAME = "prepare_summary.json"

#: Every reason a study (or an annotation entry) can be left out, and what it means.
REJECT_REASONS: dict[str, str] = {
    "report_unreadable": "the report file could not be parsed",
    "report_missing": "no report file for the study",
    "no_report_text": "neither a FINDINGS nor an IMPRESSION section with text after cleaning",
    "no_images": "the report or metadata lists no image for the study",
    "image_missing": "an image the study needs is not on disk",
    "image_unreadable": "an image the study needs could not be decoded",
    "no_frontal_view": "no image of the study is (known to be) frontal",
    "not_in_annotation": "an annotation file was given and does not list the study",
    "annotation_conflict": "the study matches annotation entries of different splits",
    "annotation_unmatched": "an annotation entry whose id matches no study (study_id is the entry id)",
    "no_split": "the official split file does not list the study",
    "split_conflict": "the study's images are in different official splits",
    "no_metadata": "the split file lists the study but the metadata file does not",
}


@dataclass(frozen=True)
class Reject:
    """One study left out of the manifest."""

    study_id: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {self.reason!r}; expected one of {sorted(REJECT_REASONS)}")


@dataclass
class Preparation:
    """The result of preparing one dataset; `write` puts it on disk."""

    source: str  # "iu-xray" | "mimic-cxr"
    studies: list[Study] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # what the user chose (seed, views, inputs)
    details: dict[str, Any] = field(default_factory=dict)  # preparer-specific counts for the summary

    def summary(self) -> dict[str, Any]:
        """Counts a user checks first: studies per split and view, rejects per reason."""
        views = Counter(ref.view for study in self.studies for ref in study.images)
        return {
            "source": self.source,
            "studies": len(self.studies),
            "splits": {split: sum(s.split == split for s in self.studies) for split in SPLITS},
            "images": sum(len(s.images) for s in self.studies),
            "views": dict(sorted(views.items())),
            "rejected": len(self.rejects),
            "reject_reasons": dict(sorted(Counter(r.reason for r in self.rejects).items())),
            "options": self.options,
            **self.details,
        }

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write manifest, rejects and summary atomically (summary last); returns the manifest path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        manifest = out / MANIFEST_NAME
        write_manifest(manifest, self.studies)
        atomic.write_text(
            out / REJECTS_NAME, "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in self.rejects)
        )
        atomic.write_json(out / SUMMARY_NAME, self.summary())
        return manifest


def manifest_image_path(path: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """How an image path is stored: relative (POSIX) when under `out_dir`, else absolute.

    A relative path lets a dataset directory that holds its own images move as a whole; an image
    elsewhere is stored absolute rather than as a fragile "../../" chain.
    """
    image = Path(path).resolve()
    root = Path(out_dir).resolve()
    if image.is_relative_to(root):
        return image.relative_to(root).as_posix()
    return str(image)
