"""Side and severity of correctly found findings: the ``report/side_match`` and ``report/severity_match`` keys.

Clinical F1 credits "right pleural effusion" for a left one. These keys take the findings a
report gets right (predicted positive and positive in the reference, after the uncertain policy)
and ask whether it also puts them on the right side and calls them the right size or degree:

* the reference's side and severity come from the manifest's ground truth
  (``meta.finding_attributes``, which phantoms write) where present, otherwise from the side and
  severity words that the rule labeler attaches to the reference report's affirmed mentions;
* the report's come from the words attached to its own affirmed mentions, over both sections;
* a finding matches when the report's set of sides (severities) is exactly the reference's: a
  report that names no side, or both a left and a right effusion for a left one, does not.

``side_match`` = matching / ``side_match_n`` correctly found findings whose reference gives a side
(likewise ``severity_match``), overall and per observation (``side_match/<observation>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from radllm.errors import RadllmError
from radllm.labels import slug
from radllm.labeler.attributes import SIDED_OBSERVATIONS, parse_severity, parse_side
from radllm.labeler.labeler import Mention
from radllm.labels import OBSERVATIONS


@dataclass(frozen=True)
class FindingAttributes:
    """What a report (or the ground truth) says about one finding's side and severity."""

    sides: frozenset[str] = frozenset()  # empty: no side given
    severities: frozenset[str] = frozenset()  # levels of radllm.labeler.attributes.SEVERITIES; empty: none given


StudyAttributes = dict[str, FindingAttributes]  # observation -> attributes


def stated_attributes(mentions: Iterable[Mention]) -> StudyAttributes:
    """Sides and severities the affirmed (positive or uncertain) mentions give each observation."""
    sides: dict[str, set[str]] = {}
    severities: dict[str, set[str]] = {}
    for m in mentions:
        if m.value not in (1, -1):
            continue
        sides.setdefault(m.observation, set())
        severities.setdefault(m.observation, set())
        if m.observation in SIDED_OBSERVATIONS:
            sides[m.observation] |= m.sides
        if m.severity is not None:
            severities[m.observation].add(m.severity)
    return {name: FindingAttributes(frozenset(sides[name]), frozenset(severities[name])) for name in sides}


def ground_truth_attributes(raw: object, where: str) -> StudyAttributes:
    """``meta.finding_attributes`` of a manifest study as `FindingAttributes`.

    Raises:
        RadllmError: not an object of observations, or a side / severity that is not one.
    """
    if not isinstance(raw, Mapping):
        raise RadllmError(f"{where}: meta.finding_attributes must be an object {{observation: {{side, severity}}}}, got {type(raw).__name__}")
    out: StudyAttributes = {}
    for name, value in raw.items():
        if name not in OBSERVATIONS or not isinstance(value, Mapping):
            raise RadllmError(f"{where}: meta.finding_attributes[{name!r}]: expected a CheXpert observation mapped to {{side, severity}}")
        try:
            sides = parse_side(value["side"]) if "side" in value else frozenset()
            severity = frozenset({parse_severity(value["severity"])}) if "severity" in value else frozenset()
        except (ValueError, AttributeError) as err:
            raise RadllmError(f"{where}: meta.finding_attributes[{name!r}]: {err}") from err
        out[name] = FindingAttributes(sides, severity)
    return out


def attribute_metrics(
    predicted: Sequence[StudyAttributes], reference: Sequence[StudyAttributes], found: Sequence[Iterable[str]]
) -> dict[str, Any]:
    """``side_match*`` and ``severity_match*`` keys (without the group prefix).

    Args:
        predicted, reference: per study, what the report and the reference say.
        found: per study, the observations the report got right (true positives).
    """
    tallies: dict[str, dict[str, list[int]]] = {"side": {}, "severity": {}}  # kind -> observation -> [matched, n]
    for pred, ref, names in zip(predicted, reference, found):
        for name in names:
            truth, stated = ref.get(name, FindingAttributes()), pred.get(name, FindingAttributes())
            for kind, want, got in (("side", truth.sides, stated.sides), ("severity", truth.severities, stated.severities)):
                if want:
                    tally = tallies[kind].setdefault(name, [0, 0])
                    tally[0] += int(got == want)
                    tally[1] += 1
    out: dict[str, Any] = {}
    for kind, per_observation in tallies.items():
        matched, n = sum(t[0] for t in per_observation.values()), sum(t[1] for t in per_observation.values())
        out[f"{kind}_match"] = matched / n if n else None
        out[f"{kind}_match_n"] = n
        for name in OBSERVATIONS:
            if name in per_observation:
                out[f"{kind}_match/{slug(name)}"] = per_observation[name][0] / per_observation[name][1]
    return out
