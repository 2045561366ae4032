"""Reading JSON Lines written by people or by other tools: one object per line, errors by file:line.

Manifests, prediction files, question files and report inputs all share this reader, so every
one of them skips blank lines and reports a broken line the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError


def read_text_file(path: str | os.PathLike, what: str = "") -> str:
    """The UTF-8 text of `path`; a missing, unreadable or non-UTF-8 file is a `RadllmError` naming
    it (and `what` it should have been, e.g. "metrics file")."""
    label = f"{what} {path}".strip()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise RadllmError(f"{label} does not exist") from err
    except UnicodeDecodeError as err:
        raise RadllmError(f"{label}: not UTF-8 text ({err.reason} at byte {err.start}); expected a UTF-8 text file") from err
    except OSError as err:
        raise RadllmError(f"{label}: cannot read ({err.strerror or err})") from err


def read_json_file(path: str | os.PathLike, what: str = "") -> Any:
    """The JSON value in `path`, with every way of not being JSON a `RadllmError` (see `read_text_file`)."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RadllmError(f"{f'{what} {path}'.strip()}: not valid JSON ({err.msg} at line {err.lineno})") from err


def text_lines(lines: Iterable[str], source: object) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a text file opened as UTF-8, with a decoding error (binary
    garbage, a Latin-1 export) turned into a `RadllmError` that names `source:line`."""
    iterator = iter(lines)
    lineno = 0
    while True:
        lineno += 1
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as err:
            raise RadllmError(f"{source}: not UTF-8 text ({err.reason}) at or after line {lineno}; expected a UTF-8 text file") from err
        yield lineno, line


def iter_json_objects(lines: Iterable[str], source: object, hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line of `lines`.

    Args:
        lines: the file's lines (an open text file or a list of strings).
        source: what to name in errors (usually the path).
        hint: appended to the "not valid JSON" error, e.g. what to do about it.

    Raises:
        RadllmError: a line that is not JSON, or JSON that is not an object, naming `source:line`.
    """
    for lineno, line in text_lines(lines, source):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise RadllmError(f"{source}:{lineno}: not valid JSON ({err.msg}){hint}") from err
        if not isinstance(obj, dict):
            raise RadllmError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
