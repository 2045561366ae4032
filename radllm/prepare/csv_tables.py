"""Reading the datasets' CSV tables (plain or gzipped) with the standard csv module.

Tables such as MIMIC-CXR's metadata have ~377k rows; they are streamed row by row as dicts, and
a missing file or column is a `RadllmError` that names the file and what was expected.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from radllm.errors import RadllmError


def find_table(root: str | os.PathLike, stem: str, required: bool = True) -> Path | None:
    """`root/stem.csv.gz` or `root/stem.csv`, whichever exists (gzip first, as distributed)."""
    candidates = [Path(root, f"{stem}.csv.gz"), Path(root, f"{stem}.csv")]
    for path in candidates:
        if path.is_file():
            return path
    if required:
        raise RadllmError(f"table {stem!r} not found: expected {candidates[0]} or {candidates[1]}")
    return None


def read_rows(path: str | os.PathLike, required_columns: Sequence[str]) -> Iterator[dict[str, str]]:
    """Yield the rows of a CSV file (gzipped when its name ends in .gz) as dicts of strings.

    Raises:
        RadllmError: missing file or column, undecodable bytes, or a row with more or fewer fields
            than the header (file:line named), which csv.DictReader would fill with None.
    """
    path = Path(path)
    if not path.is_file():
        raise RadllmError(f"table {path} does not exist")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        try:
            reader = csv.DictReader(text)
            missing = [c for c in required_columns if c not in (reader.fieldnames or [])]
            if missing:
                raise RadllmError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
            width = len(reader.fieldnames or [])
            for row in reader:
                if None in row or None in row.values():
                    fields = sum(1 for k, v in row.items() if k is not None and v is not None) + len(row.get(None, []))
                    raise RadllmError(f"{path}:{reader.line_num}: a row of {fields} field(s) under a header of {width}; expected {width} fields on every row")
                yield row
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
            raise RadllmError(f"{path}: cannot be read as a CSV table ({err})") from err
