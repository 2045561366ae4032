"""Radiology report text: cleaning, section extraction and the one way sections become model text.

Used twice with the same rules: when a dataset is prepared (manifest texts) and when generated
reports are evaluated against references, so both sides of a metric see identically cleaned text.

Cleaning keeps case. Metrics that want lowercase text lowercase inside their own tokenization;
the manifest keeps what the radiologist wrote because case carries meaning for the labeler
("AP" view vs the word "ap") and for readers of generated reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# --- clean_report ---------------------------------------------------------------------------

# De-identification placeholders: IU X-Ray replaces dates, names and some words by "XXXX" (rarely
# lowercase); MIMIC-CXR uses "___". A run of x's only counts as a placeholder when it is a whole
# word (no real word is all x's); underscores never occur in report prose, so any run of two or
# more goes, even glued to a letter ("___F with ascites"). Hyphens that tied a placeholder to a
# word ("XXXX-year-old", "x-XXXX") go with it.
_PLACEHOLDER = re.compile(r"-?(?:(?<![A-Za-z0-9])[Xx]{3,}(?![A-Za-z0-9])|_{2,})-?")
# "1. ", "2) ", "3.Small" at the start of a line; "1.5 cm" is a measurement, not a list item.
_LIST_NUMBER = re.compile(r"^\d{1,2}[.)](?!\d)\s*")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_PUNCT_RUN = re.compile(r"[.,;:!?](?:\s*[.,;:!?])+")
_LEADING_JUNK = re.compile(r"^[\s.,;:!?-]+")
_SENTENCE_END = (".", "!", "?", ":", ";")


def _strongest_mark(run: re.Match[str]) -> str:
    """The one mark a punctuation run collapses to: a sentence end beats ';' beats ':' beats ','."""
    marks = run.group(0)
    for candidates in (".!?", ";", ":"):
        for char in marks:
            if char in candidates:
                return char
    return ","


def _strip_list_marker(line: str) -> tuple[str, bool]:
    """`line` without leading punctuation and list numbers ("1. 2) - x" -> "x"), and whether a
    number was removed. Repeated until nothing changes, so cleaning stays idempotent."""
    numbered = False
    while True:
        stripped = _LEADING_JUNK.sub("", line.strip())
        match = _LIST_NUMBER.match(stripped)
        if match:
            numbered = True
            stripped = stripped[match.end() :]
        if stripped == line:
            return line, numbered
        line = stripped


def clean_report(text: str) -> str:
    """Normalise one report (or one section) to a single tidy line.

    The rules, applied in this order:

    1. Newlines: ``\\r\\n`` and ``\\r`` become ``\\n``; tabs and non-breaking spaces become spaces.
    2. De-identification placeholders are removed: whole-word runs of three or more ``X``/``x``
       (IU X-Ray's ``XXXX``) and runs of two or more underscores (MIMIC-CXR's ``___``), together
       with a hyphen that joined them to a word. They become nothing, not a token, so
       ``"XXXX XXXX is normal."`` becomes ``"is normal."`` and ``"XXXX-year-old"`` ``"year-old"``.
    3. List numbering at the start of a line (``"1. "``, ``"2) "``) is stripped, with any
       punctuation or hyphen bullets before it. When the
       previous item did not end a sentence, a period is added so items stay separate sentences:
       ``"1. Stable cardiomegaly\\n2. No edema"`` becomes ``"Stable cardiomegaly. No edema"``.
    4. Lines are joined with single spaces; runs of whitespace collapse to one space.
    5. Tidying what removals leave behind: empty brackets ``()`` go, spaces before ``. , ; : ! ?``
       go, and a run of punctuation marks (``".."``, ``", ."``, ``",,"``) collapses to its
       strongest mark (``. ! ?`` > ``;`` > ``:`` > ``,``); punctuation or hyphens left at the very
       start are dropped.

    Case is kept. The function is idempotent: cleaning cleaned text changes nothing.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").replace("\u00a0", " ")
    text = _PLACEHOLDER.sub(" ", text)
    joined = ""
    for raw_line in text.split("\n"):
        line, numbered = _strip_list_marker(raw_line)
        if numbered and joined and not joined.endswith(_SENTENCE_END):
            joined += "."
        if line:
            joined = f"{joined} {line}" if joined else line
    text = re.sub(r"\s+", " ", joined)
    text = _EMPTY_BRACKETS.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _PUNCT_RUN.sub(_strongest_mark, text)
    text = _LEADING_JUNK.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


# --- extract_sections -----------------------------------------------------------------------

FINDINGS = "FINDINGS"
IMPRESSION = "IMPRESSION"
FINDINGS_AND_IMPRESSION = "FINDINGS AND IMPRESSION"
INDICATION = "INDICATION"
COMPARISON = "COMPARISON"

# Header spellings seen in MIMIC-CXR free text, normalised (upper case, single spaces, "&" as
# "AND", no spaces around "/"), mapped to the section they open.
_SYNONYMS: dict[str, str] = {
    "FINDING": FINDINGS,
    "FINDINGS": FINDINGS,
    "IMPRESSION": IMPRESSION,
    "IMPRESSIONS": IMPRESSION,
    "CONCLUSION": IMPRESSION,
    "CONCLUSIONS": IMPRESSION,
    "FINDINGS AND IMPRESSION": FINDINGS_AND_IMPRESSION,
    "FINDINGS AND IMPRESSIONS": FINDINGS_AND_IMPRESSION,
    "FINDINGS/IMPRESSION": FINDINGS_AND_IMPRESSION,
    "FINDINGS/IMPRESSIONS": FINDINGS_AND_IMPRESSION,
    "IMPRESSION AND FINDINGS": FINDINGS_AND_IMPRESSION,
    "IMPRESSION/FINDINGS": FINDINGS_AND_IMPRESSION,
    "INDICATION": INDICATION,
    "INDICATIONS": INDICATION,
    "CLINICAL INDICATION": INDICATION,
    "HISTORY": INDICATION,
    "CLINICAL HISTORY": INDICATION,
    "REASON FOR EXAM": INDICATION,
    "REASON FOR EXAMINATION": INDICATION,
    "COMPARISON": COMPARISON,
    "COMPARISONS": COMPARISON,
}
# Lines that open a new part of the report without a colon ("FINAL REPORT" ends a wet read).
_STANDALONE = {"FINAL REPORT", "ADDENDUM"}

_HEADER_COLON = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z &/()'-]{0,60}?)\s*:(?P<rest>.*)$")
_HEADER_ALONE = re.compile(r"^\s*(?P<name>[A-Za-z][A-Za-z &/()'-]{0,60}?)\s*$")
# A known header written in capitals after a sentence on the same line ("... normal. IMPRESSION:").
_INLINE_HEADER = re.compile(
    r"(?<=[.!?])[ \t]+(?=(?:FINDINGS|IMPRESSION|CONCLUSION|FINDINGS AND IMPRESSION)[ \t]*:)"
)


def _canonical(name: str) -> str:
    name = re.sub(r"\s*&\s*", " AND ", name.upper())
    name = re.sub(r"\s*/\s*", "/", name)
    name = re.sub(r"\s+", " ", name).strip()
    return _SYNONYMS.get(name, name)


def _header(line: str) -> tuple[str, str] | None:
    """(section name, text after the colon) when `line` opens a section, else None.

    Known section names count in any case ("Findings:", "IMPRESSION :"); any other name only
    when written in capitals ("WET READ:", "TECHNIQUE:"), since mixed-case "Heart size: normal"
    is prose. Without a colon only known names and "FINAL REPORT"/"ADDENDUM" open a section.
    """
    match = _HEADER_COLON.match(line)
    if match:
        raw = match.group("name")
        name = _canonical(raw)
        letters = [c for c in raw if c.isalpha()]
        if name in _SYNONYMS.values() or (len(letters) >= 2 and raw == raw.upper()):
            return name, match.group("rest")
        return None
    match = _HEADER_ALONE.match(line)
    if match:
        name = _canonical(match.group("name"))
        if name in _SYNONYMS.values() or name in _STANDALONE:
            return name, ""
    return None


def extract_sections(text: str) -> dict[str, str]:
    """Split MIMIC-style free text into sections keyed by canonical upper-case header names.

    A section starts at a header at the start of a line (``"FINDINGS:"``, ``"Impression :"``,
    ``"FINDINGS AND IMPRESSION:"``, any ALL-CAPS name followed by a colon, or a known name or
    ``FINAL REPORT`` alone on a line) and runs to the next header. Spelling variants map to one
    key: ``FINDINGS``, ``IMPRESSION`` (also CONCLUSION), ``FINDINGS AND IMPRESSION``,
    ``INDICATION`` (also HISTORY, REASON FOR EXAM) and ``COMPARISON``; other headers keep their
    upper-cased name. Text before the first header (the preamble) belongs to no section. A
    header that occurs twice (an addendum repeating IMPRESSION) gets both texts, separated by a
    blank line. Values are the raw section text with line breaks kept (`clean_report` needs them to
    see list numbering), stripped of surrounding blank lines; empty sections are left out.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _INLINE_HEADER.sub("\n", text)
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        header = _header(line)
        if header is None:
            if current is not None:
                current.append(line)
            continue
        name, rest = header
        current = sections.setdefault(name, [])
        if current:
            current.append("")  # a repeated header: a blank line keeps its text apart
        current.append(rest.strip())
    out: dict[str, str] = {}
    for name, lines in sections.items():
        body = "\n".join(lines).strip()
        if body:
            out[name] = re.sub(r"\n{3,}", "\n\n", body)
    return out


def findings_and_impression(sections: Mapping[str, str]) -> tuple[str, str]:
    """Cleaned (findings, impression) from `extract_sections` output.

    A combined "FINDINGS AND IMPRESSION" section counts as findings (after a separate FINDINGS
    section if both exist), so the text is never duplicated into both fields.
    """
    findings_parts = [sections.get(FINDINGS, ""), sections.get(FINDINGS_AND_IMPRESSION, "")]
    findings = " ".join(clean_report(part) for part in findings_parts if part.strip())
    return clean_report(findings), clean_report(sections.get(IMPRESSION, ""))


# --- report_text ----------------------------------------------------------------------------

FINDINGS_TAG = "FINDINGS:"
IMPRESSION_TAG = "IMPRESSION:"


def report_text(findings: str, impression: str, impression_first: bool = False) -> str:
    """The full report as the model reads and writes it: ``"FINDINGS: <f> IMPRESSION: <i>"``.

    Single spaces around the parts; a part whose section is empty is left out entirely
    (``"IMPRESSION: <i>"``), and two empty sections give ``""``. Sections are expected to be
    cleaned already (`clean_report`); they are only stripped here. `impression_first` puts the
    impression first (``"IMPRESSION: <i> FINDINGS: <f>"``), the training-target order of
    ``tasks.report_format: impression_first``: the image-determined summary comes before the
    long findings prose, so the model commits to the findings while it still looks at the image.
    """
    parts = []
    if findings.strip():
        parts.append(f"{FINDINGS_TAG} {findings.strip()}")
    if impression.strip():
        parts.append(f"{IMPRESSION_TAG} {impression.strip()}")
    return " ".join(reversed(parts) if impression_first else parts)


def split_report_text(text: str) -> tuple[str, str]:
    """Inverse of `report_text` (either section order): (findings, impression) from a model-format report.

    Used on generated reports, which may lack either tag; text before any tag counts as
    findings. The first ``IMPRESSION:`` tag splits; when the text opens with it, a later
    ``FINDINGS:`` tag ends the impression (the impression-first order). A model that repeats a
    tag keeps the rest inside that section.
    """
    text = text.strip()
    if text.startswith(IMPRESSION_TAG):
        impression, tag, findings = text[len(IMPRESSION_TAG) :].partition(FINDINGS_TAG)
        return findings.strip() if tag else "", impression.strip()
    head, tag, tail = text.partition(IMPRESSION_TAG)
    impression = tail.strip() if tag else ""
    findings = head.strip()
    if findings.startswith(FINDINGS_TAG):
        findings = findings[len(FINDINGS_TAG) :].strip()
    return findings, impression


def as_written_order(text: str) -> str:
    """A report in the usual order: an impression-first text (``IMPRESSION: … FINDINGS: …``)
    is put back as ``FINDINGS: … IMPRESSION: …``; any other text is returned unchanged.

    Generation applies it to every decoded report, so a model trained on impression-first
    targets is scored and read like any other.
    """
    stripped = text.strip()
    if not (stripped.startswith(IMPRESSION_TAG) and FINDINGS_TAG in stripped):
        return text
    return report_text(*split_report_text(stripped))
