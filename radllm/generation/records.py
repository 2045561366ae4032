"""Resumable JSONL output: per-rank part files appended a batch at a time, merged in input order.

Layout for an output file OUT (e.g. `preds.jsonl`):

    OUT.part-00000-of-00002   rank 0's records, appended one complete batch per write + fsync
    OUT.part-00001-of-00002   rank 1's records
    OUT                       the merged file, written atomically once every rank has finished

Crash safety: a batch is one `write` followed by `fsync`, so after a kill the part ends either on
a batch boundary or inside the batch being written; every complete line before the tear is a
complete record. On restart the owning rank truncates its part after the last complete line and
skips every key found in the merged file or in *any* part (parts of a run with another world
size included), so a killed and restarted run has no duplicates and no gaps, whatever the number
of ranks each time. The merge takes the union, keeps the first record per key, writes them in
input order (deterministic, independent of the world size), then deletes the parts.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.jsonl import iter_json_objects

log = logging.getLogger(__name__)

Record = dict[str, Any]
KeyFn = Callable[[Record], str]


def part_path(out: str | os.PathLike, rank: int, world_size: int) -> Path:
    """Part file of `rank` for output `out`."""
    out = Path(out)
    return out.with_name(f"{out.name}.part-{rank:05d}-of-{world_size:05d}")


def part_files(out: str | os.PathLike) -> list[Path]:
    """Every part file of `out`, of any world size, sorted by name."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    pattern = re.compile(re.escape(out.name) + r"\.part-\d{5}-of-\d{5}$")
    return sorted(p for p in out.parent.iterdir() if pattern.match(p.name))


def complete_length(path: Path) -> int:
    """Byte length of the prefix of `path` made of complete (newline-terminated) lines."""
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


def repair_tail(path: str | os.PathLike) -> int:
    """Truncate a torn last line (a write cut by a kill); returns the number of bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    keep = complete_length(path)
    if keep < size:
        with open(path, "r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", path, size - keep)
    return size - keep


def read_records(path: str | os.PathLike) -> list[Record]:
    """Records of a JSONL file, ignoring a torn last line (a line without its newline).

    Raises:
        RadllmError: a complete line that is not a JSON object (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()[: complete_length(path)]
    lines = data.decode("utf-8").splitlines()
    return [record for _, record in iter_json_objects(lines, path, hint="; delete the file to start over")]


def existing_records(out: str | os.PathLike) -> list[Record]:
    """Records already written for `out`: the merged file, then every part."""
    records = read_records(out)
    for part in part_files(out):
        records.extend(read_records(part))
    return records


def done_keys(out: str | os.PathLike, key: KeyFn) -> set[str]:
    """Keys of every record already written for `out` (merged file and all parts)."""
    return {key(r) for r in existing_records(out)}


class PartWriter:
    """Appends complete batches of records to one rank's part file (see the module docstring)."""

    def __init__(self, out: str | os.PathLike, rank: int, world_size: int) -> None:
        self.path = part_path(out, rank, world_size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)

    def append(self, records: Iterable[Record]) -> None:
        """Write all `records` in one `write`, then flush and fsync."""
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not payload:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())


def merge_parts(out: str | os.PathLike, order: Sequence[str], key: KeyFn) -> dict[str, int]:
    """Write `out` atomically with every record for the keys in `order`, in that order; delete the parts.

    Records whose key is not in `order` (left from a run on other input) are dropped with a
    warning; keys of `order` without a record (e.g. unreadable images) are counted as missing.

    Returns:
        {"written": n, "missing": m, "dropped": d}
    """
    out = Path(out)
    by_key: dict[str, Record] = {}
    for record in existing_records(out):
        by_key.setdefault(key(record), record)
    wanted = set(order)
    dropped = sum(1 for k in by_key if k not in wanted)
    if dropped:
        log.warning("%s: dropping %d record(s) whose key is not in this run's input", out, dropped)
    lines = [json.dumps(by_key[k], ensure_ascii=False) + "\n" for k in order if k in by_key]
    atomic.write_text(out, "".join(lines))
    for part in part_files(out):
        part.unlink()
    return {"written": len(lines), "missing": len(order) - len(lines), "dropped": dropped}
