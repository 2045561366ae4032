"""Side and severity of a mention: the words a radiologist puts next to a finding.

CheXpert labels say *whether* a finding is there; a report that puts the effusion on the wrong side
or calls a large pneumothorax small is still wrong for the patient. The labeler therefore also
reads the side words ("right", "left", "bilateral", "bibasilar") and severity words ("small",
"moderate", "large", "mildly", "markedly") attached to each mention, so evaluation can check them
(`radllm.evaluation.attributes`) and the coherence rules can tell "No right effusion. Small left
effusion." (two sides, no contradiction) from "No effusion. Small left effusion." (a contradiction).

A word is attached to a mention when it lies in the same sentence and nothing that opens another
clause or list item (a comma, ";", "and", "but", "or") lies between them; of several such words
the nearest wins. So "small right pleural effusion and left lower lobe atelectasis" gives the
effusion the right side and the atelectasis the left, "consolidation in the left upper lobe" reads
the side after the mention, "right middle lobe consolidation with associated opacity" gives the
opacity the right side too, and in "left effusion and pneumothorax" the pneumothorax gets no side
(the rules do not guess). Commas and "and" inside a list of numbers ("left 6th, 7th and 8th rib
fractures") break nothing.

Severity is put on one scale for every finding: mild (small, trace, minimal, mild), moderate, and
severe (large, marked, severe, massive), because reports grade effusions by size and the heart
by degree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from radllm.labels import OBSERVATIONS

#: Canonical sides; "bilateral" is both of them.
RIGHT, LEFT = "right", "left"
BOTH_SIDES = frozenset({RIGHT, LEFT})

#: Observations whose side is part of the finding: all but heart and mediastinal size, edema
#: (bilateral by nature), support devices (their side is a route, not a finding) and "No Finding".
SIDED_OBSERVATIONS: tuple[str, ...] = tuple(
    name for name in OBSERVATIONS
    if name not in ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Edema", "Support Devices")
)

#: Severity scale, in order.
SEVERITIES: tuple[str, ...] = ("mild", "moderate", "severe")

_SIDE_WORDS: dict[str, frozenset[str]] = {
    r"right": frozenset({RIGHT}),
    r"left": frozenset({LEFT}),
    r"bilateral(?:ly)?|both|bibasilar|bibasal|biapical": BOTH_SIDES,
}
_SEVERITY_WORDS: dict[str, str] = {
    r"mild(?:ly)?|small|trace|tiny|minimal(?:ly)?|slight(?:ly)?": "mild",
    r"moderate(?:ly)?|moderate-sized": "moderate",
    r"large|marked(?:ly)?|severe(?:ly)?|massive|extensive": "severe",
}
_SIDE = re.compile(r"\b(?:" + "|".join(f"(?P<s{i}>{p})" for i, p in enumerate(_SIDE_WORDS)) + r")\b")
_SEVERITY = re.compile(r"\b(?:" + "|".join(f"(?P<v{i}>{p})" for i, p in enumerate(_SEVERITY_WORDS)) + r")\b")
# What separates a qualifier from a finding it does not describe (sentence ends are separate).
# "with" is no break: "opacity in the left upper lobe consistent with consolidation" is one finding.
_CLAUSE_BREAK = re.compile(r",(?! ?\d)|;|\b(?:and|or)\b(?! \d)|\b(?:but|however|whereas|while)\b")

Span = tuple[int, int]


def _words(pattern: re.Pattern[str], values: Sequence, text: str) -> list[tuple[int, int, object]]:
    found = []
    for match in pattern.finditer(text):
        index = int(match.lastgroup[1:])  # type: ignore[index]
        found.append((match.start(), match.end(), values[index]))
    return found


def _nearest(span: Span, candidates: list[tuple[int, int, object]], text: str, sentence: Span) -> object | None:
    """The value of the nearest candidate attached to `span` (see the module docstring), or None."""
    start, end = span
    best: tuple[int, object] | None = None
    for c_start, c_end, value in candidates:
        if c_start >= start and c_end <= end:
            distance, gap = 0, (start, start)  # inside the mention's own span ("heart is moderately enlarged")
        elif c_end <= start:
            distance, gap = start - c_end, (c_end, start)
        elif c_start >= end:
            distance, gap = c_start - end, (end, c_start)
        else:
            continue
        if c_start < sentence[0] or c_end > sentence[1]:
            continue
        if _CLAUSE_BREAK.search(text, gap[0], gap[1]):
            continue
        if best is None or distance < best[0]:
            best = (distance, value)
    return None if best is None else best[1]


def attach_attributes(
    text: str, spans: Sequence[Span], sentences: Sequence[Span]
) -> list[tuple[frozenset[str], str | None]]:
    """(sides, severity) of each mention span in prepared (lower-case) `text`.

    Args:
        text: the labeler's prepared text.
        spans: [start, end) of each mention, as the labeler found them (an anatomy mention's span
            runs to its size word: "heart is moderately enlarged").
        sentences: [start, end) of each sentence of `text`.

    Returns:
        One (sides, severity) per span: sides empty when none is attached, severity None likewise.
    """
    sides = _words(_SIDE, list(_SIDE_WORDS.values()), text)
    severities = _words(_SEVERITY, list(_SEVERITY_WORDS.values()), text)
    out = []
    for span in spans:
        sentence = next((s for s in sentences if s[0] <= span[0] < s[1]), (0, len(text)))
        side = _nearest(span, sides, text, sentence)
        severity = _nearest(span, severities, text, sentence)
        out.append((side if isinstance(side, frozenset) else frozenset(), severity if isinstance(severity, str) else None))
    return out


def attribute_vocabulary() -> dict[str, object]:
    """The side and severity word lists (part of the rules' identity hash)."""
    return {"sides": _SIDE_WORDS, "severities": _SEVERITY_WORDS, "breaks": _CLAUSE_BREAK.pattern}


def side_name(sides: frozenset[str]) -> str:
    """"right", "left", "bilateral" or "" for no side: how sides are written in outputs."""
    if sides == BOTH_SIDES:
        return "bilateral"
    return next(iter(sides)) if sides else ""


def parse_side(value: str) -> frozenset[str]:
    """"right" / "left" / "bilateral" -> the set of sides.

    Raises:
        ValueError: any other value.
    """
    sides = {"right": frozenset({RIGHT}), "left": frozenset({LEFT}), "bilateral": BOTH_SIDES}
    if value not in sides:
        raise ValueError(f"side {value!r}; expected one of {sorted(sides)}")
    return sides[value]


def parse_severity(value: str) -> str:
    """A severity word of any finding ("small", "marked", "moderate") -> its level in `SEVERITIES`.

    Raises:
        ValueError: a word that is not a severity.
    """
    for pattern, level in _SEVERITY_WORDS.items():
        if re.fullmatch(pattern, value.lower()):
            return level
    raise ValueError(f"severity {value!r}; expected a size or degree word such as small, moderate, large, mild, marked")
