"""Reading reports to label (JSONL or plain text) and writing labelled JSONL: `radllm label`.

Input is either
* JSONL (``.jsonl``/``.json``/``.ndjson``): one object per line with the report under ``text`` or
  ``report``; ``report`` may also be a manifest report object (its ``text``, else findings +
  impression), so a `radllm.manifest` file labels as is; or
* any other file: plain text, one report per line (blank lines skipped).

Each output line keeps the input's identifier fields (``id``, ``key`` and every ``*_id``; for
plain text, the 1-based ``line`` number) and adds ``"labels": {observation: 1 | 0 | -1 | null}``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from radllm import atomic
from radllm.errors import RadllmError
from radllm.jsonl import iter_json_objects, text_lines
from radllm.labeler.model_labeler import load_labeler
from radllm.report_text import report_text

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_FIELDS = ("text", "report")


@dataclass
class ReportRecord:
    """One report to label and the identifier fields that travel with its labels."""

    ids: dict[str, Any]
    text: str


def is_id_field(key: str) -> bool:
    return key in ("id", "key") or key.endswith("_id")


def report_from_json(obj: dict[str, Any], where: str) -> str:
    """The report text of a JSON record (``text``, or ``report`` as a string or manifest object)."""
    for key in TEXT_FIELDS:
        if key not in obj:
            continue
        value = obj[key]
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            for section in ("text", "findings", "impression"):
                if not isinstance(value.get(section, ""), str):
                    raise RadllmError(f"{where}: {key}.{section} is {json.dumps(value[section])}; expected a string (\"\" for an absent section)")
            if value.get("text", "").strip():
                return value["text"]
            return report_text(value.get("findings", ""), value.get("impression", ""))
        raise RadllmError(f"{where}: field {key!r} is {type(value).__name__}; expected a string or a manifest report object")
    raise RadllmError(f"{where}: no report text; expected a field named one of {list(TEXT_FIELDS)} (keys found: {sorted(obj)})")


def read_reports(path: str | os.PathLike) -> Iterator[ReportRecord]:
    """Reports in `path`, in file order (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise RadllmError(f"input {path} does not exist or is not a file")
    jsonl = path.suffix.lower() in JSONL_SUFFIXES
    with open(path, encoding="utf-8") as fh:
        if not jsonl:
            for lineno, line in text_lines(fh, path):
                if line.strip():
                    yield ReportRecord({"line": lineno}, line.rstrip("\n"))
            return
        for lineno, obj in iter_json_objects(fh, path, hint="; JSONL input needs one object per line"):
            ids = {k: v for k, v in obj.items() if is_id_field(k)}
            yield ReportRecord(ids or {"line": lineno}, report_from_json(obj, f"{path}:{lineno}"))


def label_file(in_path: str | os.PathLike, out_path: str | os.PathLike, progress: bool = True, labeler_dir: str | None = None, chunk: int = 256) -> int:
    """Label every report in `in_path` and write JSONL to `out_path` atomically; returns the count.

    `labeler_dir`: a model directory (`radllm.labeler.model_labeler`) instead of the rules; reports
    are labelled `chunk` at a time so a model labeler runs in batches.
    """
    labeler = load_labeler(labeler_dir)
    count = 0
    with atomic.atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        records = iter(tqdm(read_reports(in_path), desc="label", unit=" reports", disable=not progress))
        while batch := list(itertools.islice(records, chunk)):
            for record, labels in zip(batch, labeler.label_many([r.text for r in batch])):
                out.write(json.dumps({**record.ids, "labels": labels}) + "\n")
            count += len(batch)
    return count
