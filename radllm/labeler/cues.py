"""Negation and uncertainty cues, and the words that end their reach (scope).

A cue acts on mentions in one direction inside one sentence:

* ``forward`` cues precede what they modify ("no effusion", "possible pneumonia") and reach every
  mention after them up to the next forward stop, so "no A, B or C" negates all three while "no
  effusion but there is consolidation" stops at "but".
* ``both``: hedges that work either way ("cannot exclude effusion", "effusion cannot be
  excluded", "borderline heart size", "heart size is borderline").
* ``backward`` cues follow what they modify ("effusion is not seen", "cannot be excluded") and
  reach back to the previous backward stop, so "heart size and mediastinal contours are normal"
  negates both while "mild cardiomegaly, mediastinal contours are normal" keeps the first.

Cue classes are applied in the order of `radllm.labeler.labeler`: pre-negation uncertainty (cues
that contain a negation word but hedge: "cannot be excluded") first, then negation, then
uncertainty; a mention none of them reaches is positive.

Patterns are regular-expression fragments matched at word boundaries on lower-cased text. The
lists were written for this project.
"""

from __future__ import annotations

FORWARD = "forward"
BACKWARD = "backward"
BOTH = "both"

PRE_NEGATION_UNCERTAINTY = "pre_negation_uncertainty"
NEGATION = "negation"
UNCERTAINTY = "uncertainty"
#: A negation that reaches only across "and"/"or" ("normal heart size and mediastinal contours"),
#: not across commas or "with": "normal" is an adjective, not a list opener like "no".
NARROW_NEGATION = "narrow_negation"

#: (cue class, direction) -> phrases.
CUES: dict[tuple[str, str], tuple[str, ...]] = {
    (PRE_NEGATION_UNCERTAINTY, BOTH): (
        r"(?:cannot|can ?not|could not|may not) (?:exclude|rule out|be excluded|be ruled out)",
        r"(?:(?:is|are) )?not (?:be )?(?:excluded|ruled out)",
        r"difficult to (?:exclude|rule out)",
        r"(?:(?:is|are) )?borderline",
        r"(?:(?:is|are) )?(?:at the )?upper limits? of normal",
        r"(?:(?:is|are) )?top(?:-| )normal",
    ),
    (NEGATION, FORWARD): (
        r"no",
        r"not",
        r"without",
        r"free of",
        r"clear of",
        r"negative for",
        r"absence of",
        r"resolution of",
        r"resolved",
        r"removal of",
        r"rather than",
        r"nor",
    ),
    (NARROW_NEGATION, FORWARD): (
        r"normal",
        r"(?:otherwise )?unremarkable",
        r"within normal limits",
    ),
    (NEGATION, BACKWARD): (
        r"(?:is|are|was|were|appears?|remains?|looks?) (?:otherwise )?(?:normal|unremarkable|within normal limits)",
        r"(?:is|are|was|were|appears?) (?:stable and )?(?:normal|unremarkable)(?: in (?:size|caliber|contour|configuration))",
        r"normal(?: in (?:size|caliber|contour|configuration))?(?= *(?:[.,;]|$))",
        r"within normal limits",
        r"unremarkable(?= *(?:[.,;]|$))",
        r"(?:is|are|was|were|has been|have been) (?:not|no longer) (?:seen|identified|present|evident|visualized|"
        r"visible|appreciated|demonstrated|noted|detected)",
        r"not (?:seen|identified|present|evident|visualized|visible|appreciated|demonstrated|noted|detected)",
        r"no longer (?:seen|identified|present|evident|visualized|visible|appreciated|demonstrated)",
        r"(?:is|are|was|were|has|have) (?:been )?(?:resolved|removed)",
        r"(?:has|have) (?:nearly |almost |since )?resolved",
        r"resolved",
        r"(?:is|are) absent",
        r"(?:is|are|was|were) (?:ruled out|excluded)",
    ),
    (UNCERTAINTY, FORWARD): (
        r"possible",
        r"possibly",
        r"probable",
        r"probably",
        r"(?:most )?likely",
        r"unlikely",
        r"may",
        r"might",
        r"could",
        r"questionable",
        r"question of",
        r"suspicious (?:for|of)",
        r"suspect(?:ed)?",
        r"(?:concern|concerning|worrisome|worrying) for",
        r"suggestive of",
        r"suggest(?:s|ing)?",
        r"differential (?:diagnosis )?(?:includes?|of|considerations? include)",
        r"equivocal",
        r"indeterminate",
        r"presumed",
        r"presumably",
        r"versus",
        r"vs",
        r"rule out",
        r"r/o",
        r"raises? the possibility of",
        r"cannot be distinguished from",
        r"uncertain",
    ),
    (UNCERTAINTY, BACKWARD): (
        r"(?:is|are) (?:possible|suspected|questioned|questionable|likely|not certain|uncertain|favored)",
        r"may be present",
        r"(?:is|are) (?:a )?(?:consideration|possibility)",
        r"versus",
        r"vs",
        r"could be (?:present|considered)",
    ),
}

#: Words that end a forward cue's reach: a new clause starts after them.
FORWARD_STOPS: tuple[str, ...] = (
    r"but",
    r"however",
    r"although",
    r"though",
    r"except(?:ing| for)?",
    r"whereas",
    r"while",
    r"which",
    r"otherwise",
    r"with the exception of",
    r"(?:apart|aside) from",
    r"other than",
    r"there (?:is|are|has been|have been|was|were)",
    r"and (?:the|a|an|there|this|these|it|its)",
    # A comma that opens a new clause ("no effusion, the heart is enlarged"), unlike one inside a
    # list ("no effusion, consolidation or edema").
    r",(?= (?:the|a|an|there|this|these|it|its) )",
)

#: Extra stops for `NARROW_NEGATION` cues.
NARROW_STOPS: tuple[str, ...] = (r",", r"with")

#: Words that end a backward cue's reach (it cannot look back past them).
BACKWARD_STOPS: tuple[str, ...] = (
    r",(?! ?\d)",  # not inside a list of numbers ("the 5th, 6th and 7th ribs")
    r"but",
    r"however",
    r"although",
    r"though",
    r"except(?:ing| for)?",
    r"whereas",
    r"while",
    r"which",
    r"with",
    r"otherwise",
    r"and (?:the|a|an|there|this|these|it|its)",
    r"there (?:is|are|has been|have been|was|were)",
    r"consistent with",
    r"compatible with",
    r"(?:may|might|could|likely) represent",
)
