"""A rule-based CheXpert-style labeler: report text -> 14 observations, each 1 / 0 / -1 / blank.

How one report is labelled:

1. The text is cleaned with `radllm.report_text.clean_report` (the same cleaning every dataset and
   evaluation uses), section headers ("FINDINGS:") become sentence ends, and it is lower-cased.
2. One regular-expression pass each finds mentions (`vocabulary.MENTIONS`, `ANATOMY`, minus
   `EXCLUSIONS`), size qualifiers, cues (`cues.CUES`) and scope stops. Sentence ends stop every
   cue, so nothing reaches across sentences.
3. Each mention gets a value from the cues that reach it (see `radllm.labeler.cues` for
   directions and stops), checked in this order: pre-negation uncertainty ("cannot be excluded")
   -> -1; negation -> 0; uncertainty -> -1; otherwise 1. An anatomy mention ("heart size") only
   counts when a size qualifier in its clause makes it a finding ("heart size is enlarged") or a
   negation reaches it ("heart size is normal").
4. Per observation, positive beats uncertain beats negative; unmentioned observations stay blank.
   "No Finding" is 1 when no observation other than Support Devices is positive or uncertain,
   otherwise blank (the CheXpert convention, also used by the phantoms' ground truth).

Everything is compiled once per `Labeler`; labelling is a handful of regex scans per report and
works on thousands of reports per second on one core (`benchmarks/labeler.py`).
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from radllm.labeler import cues as C
from radllm.labeler.attributes import attach_attributes, attribute_vocabulary
from radllm.labeler.matching import PhraseMatcher, tokens
from radllm.labeler.vocabulary import ANATOMY, EXCLUSIONS, MENTIONS, QUALIFIERS
from radllm.labels import NO_FINDING, Labels, empty_labels
from radllm.report_text import clean_report

SUPPORT_DEVICES = "Support Devices"

_MENTION, _ANATOMY, _EXCLUSION = "mention", "anatomy", "exclusion"
_FORWARD_STOP, _NARROW_STOP, _BACKWARD_STOP = "forward", "narrow", "backward"
# Value given by each cue class, in the order classes are checked.
_CUE_ORDER: tuple[tuple[str, int], ...] = (
    (C.PRE_NEGATION_UNCERTAINTY, -1),
    (C.NEGATION, 0),
    (C.NARROW_NEGATION, 0),
    (C.UNCERTAINTY, -1),
)
_PRIORITY = {1: 3, -1: 2, 0: 1}
# Cue classes that make a bare anatomy mention a statement about its size ("normal heart size",
# "heart size is borderline").
_SIZE_STATEMENTS = frozenset({C.PRE_NEGATION_UNCERTAINTY, C.NEGATION, C.NARROW_NEGATION})

# Upper-case section headers ("FINDINGS:", "WET READ:") end a sentence; clean_report keeps case.
_HEADER = re.compile(r"[A-Z][A-Z/& ]*[A-Z] *:")
# A period followed by a digit is a decimal point ("1.5 cm"), not a sentence end.
_SENTENCE_END = re.compile(r"[.!?;:](?!\d)")


@dataclass(frozen=True)
class Mention:
    """One labelled mention: where it is in the prepared text, the value the rules gave it, and the
    side and severity words attached to it (`radllm.labeler.attributes`)."""

    observation: str
    start: int
    end: int
    value: int
    sides: frozenset[str] = frozenset()  # {"right"}, {"left"}, both for "bilateral", empty: no side word
    severity: str | None = None  # one of attributes.SEVERITIES, None: no severity word


def prepare_text(report: str) -> str:
    """The text the rules see: cleaned, headers turned into sentence ends, lower case."""
    return _HEADER.sub(". ", clean_report(report)).lower()


def _blocked(stops: list[int], start: int, end: int) -> bool:
    """Whether a stop begins in [start, end)."""
    i = bisect.bisect_left(stops, start)
    return i < len(stops) and stops[i] < end


@lru_cache(maxsize=1)
def rules_identity() -> str:
    """`radllm-rules-<12 hex>`: a hash of every phrase list and cue the rules use, so metrics computed
    with a different rule set (another radllm version, an extended vocabulary) say so."""
    tables = {"mentions": MENTIONS, "anatomy": ANATOMY, "exclusions": EXCLUSIONS, "qualifiers": QUALIFIERS, "cues": C.CUES,
              "stops": [C.FORWARD_STOPS, C.NARROW_STOPS, C.BACKWARD_STOPS], "attributes": attribute_vocabulary()}
    digest = hashlib.sha256(repr(tables).encode()).hexdigest()  # dicts of str/tuple: a stable repr
    return f"radllm-rules-{digest[:12]}"


class Labeler:
    """Compiled rules; `label` is a pure function of the report text."""

    @property
    def identity(self) -> str:
        """Which rules label (`rules_identity`), recorded with every metric computed from them."""
        return rules_identity()

    def __init__(self) -> None:
        mention_phrases: list[tuple[str, object]] = []
        for name, phrases in MENTIONS.items():
            mention_phrases += [(p, (_MENTION, name)) for p in phrases]
        for name, phrases in ANATOMY.items():
            mention_phrases += [(p, (_ANATOMY, name)) for p in phrases]
        for name, phrases in EXCLUSIONS.items():
            mention_phrases += [(p, (_EXCLUSION, name)) for p in phrases]
        self._mentions = PhraseMatcher(mention_phrases)
        self._qualifiers = PhraseMatcher((p, True) for p in QUALIFIERS)
        self._cues = PhraseMatcher((p, key) for key, phrases in C.CUES.items() for p in phrases)
        self._stops = PhraseMatcher(
            [(p, _FORWARD_STOP) for p in C.FORWARD_STOPS]
            + [(p, _NARROW_STOP) for p in C.NARROW_STOPS]
            + [(p, _BACKWARD_STOP) for p in C.BACKWARD_STOPS]
        )

    def mentions(self, report: str) -> list[Mention]:
        """Every counted mention in `report` with its value (for inspection and tests)."""
        text = prepare_text(report)
        words = tokens(text)
        sentence_ends = [m.start() for m in _SENTENCE_END.finditer(text)]
        stops = {_FORWARD_STOP: list(sentence_ends), _NARROW_STOP: [], _BACKWARD_STOP: list(sentence_ends)}
        for start, _end, kinds in self._stops.find(text, words):
            for kind in kinds:
                stops[kind].append(start)
        for kind in (_FORWARD_STOP, _BACKWARD_STOP):
            stops[kind].sort()
        stops[_NARROW_STOP] = sorted(stops[_NARROW_STOP] + stops[_FORWARD_STOP])
        cue_matches = self._cues.find(text, words)
        qualifiers = [(start, end) for start, end, _ in self._qualifiers.find(text, words)]

        found: list[tuple[str, tuple[int, int], tuple[int, int], int]] = []  # (observation, where, span read, value)
        for start, end, tags in self._mentions.find(text, words):
            for kind, name in tags:
                if kind == _EXCLUSION:
                    continue
                span = (start, end)
                if kind == _ANATOMY:
                    span = self._qualified_span(start, end, qualifiers, stops[_BACKWARD_STOP]) or span
                value, decided_by = self._value(span, cue_matches, stops)
                if kind == _ANATOMY and span == (start, end) and decided_by not in _SIZE_STATEMENTS:
                    continue  # "heart size is stable", "heart size may be ...": no size statement
                found.append((name, (start, end), span, value))
        sentences = list(zip([0, *(end + 1 for end in sentence_ends)], [*sentence_ends, len(text)]))
        details = attach_attributes(text, [span for _, _, span, _ in found], sentences)
        return [Mention(name, where[0], where[1], value, sides, severity)
                for (name, where, _, value), (sides, severity) in zip(found, details)]

    def label(self, report: str) -> Labels:
        """The 14 labels of one report (see the module docstring for the rules)."""
        return aggregate(self.mentions(report))

    def label_many(self, reports: Iterable[str]) -> list[Labels]:
        return [self.label(r) for r in reports]

    @staticmethod
    def _qualified_span(
        start: int, end: int, qualifiers: list[tuple[int, int]], backward_stops: list[int]
    ) -> tuple[int, int] | None:
        """The span from an anatomy mention to the nearest size qualifier in its clause, if any."""
        best = None
        for q_start, q_end in qualifiers:
            lo, hi = (end, q_start) if q_start >= end else (q_end, start)
            if q_start < end and q_end > start:
                continue  # overlaps the mention itself
            if _blocked(backward_stops, lo, hi):
                continue
            if best is None or abs(q_start - start) < abs(best[0] - start):
                best = (q_start, q_end)
        if best is None:
            return None
        return min(start, best[0]), max(end, best[1])

    @staticmethod
    def _reached_by(
        span: tuple[int, int], cue_matches: list[tuple[int, int, frozenset]], stops: Mapping[str, list[int]], cue_class: str
    ) -> bool:
        start, end = span
        for c_start, c_end, keys in cue_matches:
            for klass, direction in keys:
                if klass != cue_class:
                    continue
                if c_start >= start and c_end <= end:
                    return True  # inside an anatomy span: "the heart is not enlarged"
                if direction != C.BACKWARD and c_end <= start:
                    kind = _NARROW_STOP if klass == C.NARROW_NEGATION else _FORWARD_STOP
                    if not _blocked(stops[kind], c_end, start):
                        return True
                elif direction != C.FORWARD and c_start >= end:
                    if not _blocked(stops[_BACKWARD_STOP], end, c_start):
                        return True
        return False

    def _value(
        self, span: tuple[int, int], cue_matches: list[tuple[int, int, frozenset]], stops: Mapping[str, list[int]]
    ) -> tuple[int, str | None]:
        """The mention's value and the cue class that decided it (None: positive, no cue)."""
        for cue_class, value in _CUE_ORDER:
            if self._reached_by(span, cue_matches, stops, cue_class):
                return value, cue_class
        return 1, None


def aggregate(mentions: Iterable[Mention]) -> Labels:
    """Per observation: positive beats uncertain beats negative; then the No Finding rule."""
    labels = empty_labels()
    for m in mentions:
        current = labels[m.observation]
        if current is None or _PRIORITY[m.value] > _PRIORITY[current]:
            labels[m.observation] = m.value
    abnormal = any(v in (1, -1) for name, v in labels.items() if name not in (NO_FINDING, SUPPORT_DEVICES))
    labels[NO_FINDING] = None if abnormal else 1
    return labels


@lru_cache(maxsize=1)
def default_labeler() -> Labeler:
    """The shared compiled labeler (compiling takes a few milliseconds)."""
    return Labeler()


def label_report(report: str) -> Labels:
    """Labels of one report with the default rules: {observation: 1 | 0 | -1 | None} in
    `radllm.labels.OBSERVATIONS` order."""
    return default_labeler().label(report)


def label_reports(reports: Iterable[str]) -> list[Labels]:
    """`label_report` over many reports."""
    return default_labeler().label_many(reports)

