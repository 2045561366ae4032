"""Report coherence: what a radiologist rejects at a glance and CheXpert-style labels never see.

A report-level labeler lets a positive mention win, so "No focal consolidation. … IMPRESSION:
Consolidation in the left upper lobe." counts as a correct consolidation; a report that says the
same sentence twice, or puts an effusion on the left in the findings and on the right in the
impression, scores like a clean one. These rules read a report sentence by sentence:

* **contradiction**: an observation is affirmed or called uncertain in one sentence and negated in
  another, by the labeler applied to each sentence on its own. Sides are respected: "No right
  pleural effusion. Small left pleural effusion." is no contradiction, because both sentences name
  a side and the sides differ; a sentence without a side word conflicts with any side. "No
  Finding" is derived from the others and never counted.
* **repetition**: a sentence that occurs twice in one section (case, spacing and punctuation
  ignored). An impression that restates a findings sentence is usual practice, not a repeat.
* **side consistency**: for each finding whose side matters (`SIDED_OBSERVATIONS`) that both the
  findings and the impression affirm with a side word, the two sections must give the same sides.
* **distinct reports**: how many different reports a set holds; a model that writes a handful of
  stock reports shows up here before any label does.
* **unsupported impression**: an observation the impression affirms (or calls uncertain) that no
  findings sentence affirms, in a report that has both sections: the conclusion rests on nothing
  described. An impression may name what the findings show under a broader or interpreted name
  (`INFERRED_FROM`: "consolidation" in the findings supports "possible pneumonia"), as the
  CheXpert label hierarchy has it. Generation counts it among a draft's faults (`radllm.generation.report_drafts`).

Sides come from the rule labeler's mentions (`radllm.labeler.attributes`) whatever labeler labels
the sentences, since a model labeler gives labels only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from radllm.labels import slug
from radllm.labeler.attributes import SIDED_OBSERVATIONS, side_name
from radllm.labeler.labeler import NO_FINDING, Labeler, Mention, aggregate, default_labeler
from radllm.labeler.model_labeler import ReportLabeler
from radllm.labels import OBSERVATIONS, Labels
from radllm.report_text import split_report_text

FINDINGS, IMPRESSION = "findings", "impression"
# A sentence ends at . ! or ? followed by a space or the end ("1.5 cm" stays whole).
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_AFFIRMED = (1, -1)
#: Impression observation -> findings observations that support it besides itself (the CheXpert
#: hierarchy: lung opacity is the parent of the parenchymal findings; pneumonia is read from
#: consolidation or opacity; an enlarged heart enlarges the cardiomediastinal silhouette).
INFERRED_FROM: dict[str, frozenset[str]] = {
    "Pneumonia": frozenset({"Consolidation", "Lung Opacity"}),
    "Lung Opacity": frozenset({"Consolidation", "Pneumonia", "Edema", "Atelectasis", "Lung Lesion"}),
    "Enlarged Cardiomediastinum": frozenset({"Cardiomegaly"}),
}


@dataclass(frozen=True)
class Sentence:
    """One sentence of a report: its section, text as written, and what the labeler read in it."""

    section: str  # FINDINGS or IMPRESSION
    text: str
    labels: Labels
    mentions: tuple[Mention, ...]  # the rule labeler's, for sides

    def sides(self, observation: str, affirmed_only: bool = False) -> frozenset[str]:
        """Sides given to `observation` in this sentence (only by affirming mentions if asked)."""
        found: frozenset[str] = frozenset()
        for m in self.mentions:
            if m.observation == observation and (not affirmed_only or m.value in _AFFIRMED):
                found |= m.sides
        return found


@dataclass(frozen=True)
class Contradiction:
    """An observation affirmed (or uncertain) in one sentence and negated in another."""

    observation: str
    affirmed: int  # index of the sentence in `ReportCoherence.sentences`
    negated: int


@dataclass(frozen=True)
class SideConflict:
    """A finding placed on different sides in the findings and the impression."""

    observation: str
    findings: str  # "right" / "left" / "bilateral"
    impression: str


@dataclass
class ReportCoherence:
    """The coherence reading of one report."""

    sentences: list[Sentence]
    contradictions: list[Contradiction] = field(default_factory=list)  # at most one per observation
    repeated: list[int] = field(default_factory=list)  # indices of sentences repeating an earlier one of their section
    sided_in_both: list[str] = field(default_factory=list)  # observations both sections affirm with a side
    side_conflicts: list[SideConflict] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # affirmed by the impression, by no findings sentence

    @property
    def contradicted(self) -> frozenset[str]:
        """Observations the report both affirms and negates (strict F1 counts them as errors)."""
        return frozenset(c.observation for c in self.contradictions)


def normalized(text: str) -> str:
    """Lower case, words only: the form in which two sentences or reports count as the same."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


def split_sentences(report: str) -> list[tuple[str, str]]:
    """(section, sentence) pairs of a report in model format (either section order)."""
    findings, impression = split_report_text(report)
    return [(section, part.strip()) for section, text in ((FINDINGS, findings), (IMPRESSION, impression))
            for part in SENTENCE_SPLIT.split(text) if normalized(part)]


def affirms_a_finding(sentence: str) -> bool:
    """Whether the rule labeler reads a positive or uncertain observation (not "No Finding") in `sentence`."""
    return any(m.value in _AFFIRMED and m.observation != NO_FINDING for m in default_labeler().mentions(sentence))


def _sides_compatible(a: frozenset[str], b: frozenset[str]) -> bool:
    return not a or not b or bool(a & b)


def _contradictions(sentences: Sequence[Sentence]) -> list[Contradiction]:
    found = []
    for name in OBSERVATIONS:
        if name == NO_FINDING:
            continue
        affirmed = [i for i, s in enumerate(sentences) if s.labels.get(name) in _AFFIRMED]
        negated = [i for i, s in enumerate(sentences) if s.labels.get(name) == 0]
        pair = next(((a, n) for a in affirmed for n in negated
                     if _sides_compatible(sentences[a].sides(name), sentences[n].sides(name))), None)
        if pair is not None:
            found.append(Contradiction(name, *pair))
    return found


def _repeats(sentences: Sequence[Sentence]) -> list[int]:
    seen: set[tuple[str, str]] = set()
    repeated = []
    for i, sentence in enumerate(sentences):
        key = (sentence.section, normalized(sentence.text))
        if key in seen:
            repeated.append(i)
        seen.add(key)
    return repeated


def _section_sides(sentences: Sequence[Sentence], section: str, observation: str) -> frozenset[str]:
    sides: frozenset[str] = frozenset()
    for s in sentences:
        if s.section == section and s.labels.get(observation) in _AFFIRMED:
            sides |= s.sides(observation, affirmed_only=True)
    return sides


def _affirmed_in(sentences: Sequence[Sentence], section: str) -> set[str]:
    return {name for s in sentences if s.section == section for name, value in s.labels.items() if value in _AFFIRMED}


def _unsupported(sentences: Sequence[Sentence]) -> list[str]:
    if not any(s.section == FINDINGS for s in sentences):
        return []
    described = _affirmed_in(sentences, FINDINGS)
    concluded = _affirmed_in(sentences, IMPRESSION)
    return [name for name in OBSERVATIONS
            if name != NO_FINDING and name in concluded and not described & ({name} | INFERRED_FROM.get(name, frozenset()))]


def read_coherence(reports: Sequence[str], labeler: ReportLabeler | None = None) -> list[ReportCoherence]:
    """The coherence reading of each report; sentences are labelled by `labeler` (the rules when None)."""
    rules = default_labeler()
    split = [split_sentences(report) for report in reports]
    flat = [text for sentences in split for _, text in sentences]
    mentions = [tuple(rules.mentions(text)) for text in flat]
    if labeler is None or isinstance(labeler, Labeler):
        labels = [aggregate(found) for found in mentions]
    else:
        labels = labeler.label_many(flat)
    readings, position = [], 0
    for sentences in split:
        built = [Sentence(section, text, labels[position + i], mentions[position + i]) for i, (section, text) in enumerate(sentences)]
        position += len(sentences)
        reading = ReportCoherence(built, _contradictions(built), _repeats(built))
        for name in SIDED_OBSERVATIONS:
            in_findings, in_impression = _section_sides(built, FINDINGS, name), _section_sides(built, IMPRESSION, name)
            if in_findings and in_impression:
                reading.sided_in_both.append(name)
                if in_findings != in_impression:
                    reading.side_conflicts.append(SideConflict(name, side_name(in_findings), side_name(in_impression)))
        reading.unsupported = _unsupported(built)
        readings.append(reading)
    return readings


def coherence_metrics(reports: Sequence[str], readings: Sequence[ReportCoherence]) -> dict[str, Any]:
    """The coherence keys (without the group prefix) of a set of reports and their readings.

    ``contradiction_rate`` (and ``contradiction_rate/<observation>``), ``repeat_rate``,
    ``side_consistency`` over ``side_consistency_n`` reports where both sections give a side for
    some finding (None when there is none), ``distinct_fraction``, ``n_sentences_mean``.
    """
    n = len(readings)
    if n == 0:
        return {}
    sided = [r for r in readings if r.sided_in_both]
    out: dict[str, Any] = {
        "contradiction_rate": sum(bool(r.contradictions) for r in readings) / n,
        "repeat_rate": sum(bool(r.repeated) for r in readings) / n,
        "side_consistency": sum(not r.side_conflicts for r in sided) / len(sided) if sided else None,
        "side_consistency_n": len(sided),
        "distinct_fraction": len({normalized(text) for text in reports}) / n,
        "n_sentences_mean": sum(len(r.sentences) for r in readings) / n,
    }
    for name in OBSERVATIONS:
        count = sum(name in r.contradicted for r in readings)
        if count:
            out[f"contradiction_rate/{slug(name)}"] = count / n
    return out


def offending_sentences(reading: ReportCoherence) -> dict[int, str]:
    """Sentence index -> why report.html marks it ("contradicts: Pleural Effusion", "repeated")."""
    marks: dict[int, list[str]] = {}
    for c in reading.contradictions:
        marks.setdefault(c.affirmed, []).append(f"affirms {c.observation}")
        marks.setdefault(c.negated, []).append(f"negates {c.observation}")
    for i in reading.repeated:
        marks.setdefault(i, []).append("repeated")
    return {i: "; ".join(reasons) for i, reasons in sorted(marks.items())}

