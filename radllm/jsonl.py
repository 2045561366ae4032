"""Reading JSON Lines written by people or by other tools: one object per line, errors by file:line.

Manifests, prediction files, question files and report inputs all share this reader, so every
one of them skips blank lines and reports a broken line the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from radllm.errors import RadllmError


def iter_json_objects(lines: Iterable[str], source: object, hint: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line of `lines`.

    Args:
        lines: the file's lines (an open text file or a list of strings).
        source: what to name in errors (usually the path).
        hint: appended to the "not valid JSON" error, e.g. what to do about it.

    Raises:
        RadllmError: a line that is not JSON, or JSON that is not an object, naming `source:line`.
    """
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise RadllmError(f"{source}:{lineno}: not valid JSON ({err.msg}){hint}") from err
        if not isinstance(obj, dict):
            raise RadllmError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
