"""Report cleaning rules, MIMIC-style section extraction and the model-format report text."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radllm.report_text import (
    as_written_order,
    clean_report,
    extract_sections,
    findings_and_impression,
    report_text,
    split_report_text,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # whitespace and newlines
        ("Heart  size\tis\r\nnormal.\rLungs clear.", "Heart size is normal. Lungs clear."),
        ("  \n\n  ", ""),
        # IU X-Ray placeholders: removed, with what they leave behind tidied
        ("XXXX XXXX is normal.", "is normal."),
        ("There are no XXXX of a pleural effusion.", "There are no of a pleural effusion."),
        ("Normal chest x-XXXX.", "Normal chest x."),
        ("This is a XXXX-year-old female.", "This is a year-old female."),
        ("No XXXX, focal airspace disease.", "No, focal airspace disease."),
        ("Stable appearance since XXXX. XXXX, the lungs are clear.", "Stable appearance since. the lungs are clear."),
        ("lower xxxx opacity", "lower opacity"),
        ("left-XXXX-sided", "left sided"),
        ("XXXX. Heart normal.", "Heart normal."),
        ("Xray of the xiphoid, x-ray.", "Xray of the xiphoid, x-ray."),  # real words with x stay
        # MIMIC placeholders, glued to letters too
        ("___F with new onset ascites", "F with new onset ascites"),
        ("Compared to ___ (___).", "Compared to."),
        ("Dr. ___ was paged at ___ on ___.", "Dr. was paged at on."),
        # list numbering at line starts
        ("1. No acute process.\n2. Small effusion.", "No acute process. Small effusion."),
        ("1) Stable cardiomegaly\n2) No edema", "Stable cardiomegaly. No edema"),
        ("IMPRESSION text\n  3.Stable nodule", "IMPRESSION text. Stable nodule"),
        ("1.5 cm nodule in the left apex.", "1.5 cm nodule in the left apex."),
        ("Nodule measures\n2 cm.", "Nodule measures 2 cm."),
        ("- 1. First finding", "First finding"),
        # punctuation runs collapse to the strongest mark
        ("Heart normal.. Lungs clear,, no effusion", "Heart normal. Lungs clear, no effusion"),
        ("Lungs clear , . No effusion", "Lungs clear. No effusion"),
        ("No effusion ;, pneumothorax", "No effusion; pneumothorax"),
        ("Is there effusion?.", "Is there effusion?"),
        ("Comparison: .", "Comparison."),
        # case is kept
        ("AP view. NO PNEUMOTHORAX.", "AP view. NO PNEUMOTHORAX."),
    ],
)
def test_clean_report_rules(raw, expected):
    assert clean_report(raw) == expected


_WORDS = st.sampled_from(
    ["Heart", "normal", "XXXX", "xxxx", "___", "1.", "2)", "1.5", "-", ",", ".", ";", ":", "(", ")", "?", "\n", " ", "x-XXXX", "e.g.,"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=30).map(" ".join))
def test_clean_report_is_idempotent_and_single_line(text):
    once = clean_report(text)
    assert clean_report(once) == once
    assert "\n" not in once and "  " not in once and once == once.strip()
    assert "XXXX" not in once and "___" not in once


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 1. No acute cardiopulmonary process
 2. Nipple shadows.
"""


def test_extract_sections_standard_mimic_report():
    sections = extract_sections(MIMIC_REPORT)
    assert list(sections) == ["EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS", "IMPRESSION"]
    assert sections["INDICATION"] == "___F with new onset ascites  // eval for infection"
    assert sections["IMPRESSION"] == "1. No acute cardiopulmonary process\n 2. Nipple shadows."
    assert findings_and_impression(sections) == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities that most "
        "likely represent nipple shadows. The cardiomediastinal silhouette is normal.",
        "No acute cardiopulmonary process. Nipple shadows.",
    )


def test_extract_sections_header_variants():
    text = (
        "WET READ: ___ ___ 4:25 PM\n  No pneumothorax.\n\n"
        "FINAL REPORT\n"
        "HISTORY: Cough.\n"
        "Findings :  Heart size: normal.\n  Lungs clear.\n"
        "impression: stable. CONCLUSION: Nothing acute.\n"
    )
    sections = extract_sections(text)
    # "FINAL REPORT" ends the wet read; "Heart size:" is prose (mixed case, unknown name);
    # HISTORY is an INDICATION; an inline capitalised CONCLUSION after a sentence opens IMPRESSION again.
    assert sections == {
        "WET READ": "___ ___ 4:25 PM\n  No pneumothorax.",
        "INDICATION": "Cough.",
        "FINDINGS": "Heart size: normal.\n  Lungs clear.",
        "IMPRESSION": "stable.\n\nNothing acute.",
    }
    assert findings_and_impression(sections) == ("Heart size: normal. Lungs clear.", "stable. Nothing acute.")


@pytest.mark.parametrize(
    "header", ["FINDINGS AND IMPRESSION:", "Findings and impression :", "FINDINGS/IMPRESSION:", "FINDINGS & IMPRESSION:"]
)
def test_combined_section_counts_as_findings_once(header):
    sections = extract_sections(f"EXAMINATION: CHEST\n{header}\nNo acute process.\n")
    assert sections == {"EXAMINATION": "CHEST", "FINDINGS AND IMPRESSION": "No acute process."}
    assert findings_and_impression(sections) == ("No acute process.", "")


def test_extract_sections_without_headers_or_with_empty_ones():
    assert extract_sections("Heart normal. Lungs clear.") == {}
    assert extract_sections("FINDINGS:\n\nIMPRESSION: No change.") == {"IMPRESSION": "No change."}
    assert extract_sections("IMPRESSION\nNo change.") == {"IMPRESSION": "No change."}  # known header alone


def test_report_text_format_and_inverse():
    assert report_text("Lungs clear.", "Normal.") == "FINDINGS: Lungs clear. IMPRESSION: Normal."
    assert report_text("", " Normal. ") == "IMPRESSION: Normal."
    assert report_text("Lungs clear.", "") == "FINDINGS: Lungs clear."
    assert report_text("", "") == ""
    for findings, impression in [("Lungs clear.", "Normal."), ("", "Normal."), ("Lungs clear.", ""), ("", "")]:
        assert split_report_text(report_text(findings, impression)) == (findings, impression)
    assert split_report_text("Lungs clear. IMPRESSION: a IMPRESSION: b") == ("Lungs clear.", "a IMPRESSION: b")


def test_impression_first_format_round_trips_and_is_put_back_in_written_order():
    text = report_text("Lungs clear.", "Normal.", impression_first=True)
    assert text == "IMPRESSION: Normal. FINDINGS: Lungs clear."
    assert split_report_text(text) == ("Lungs clear.", "Normal.")
    assert split_report_text("IMPRESSION: Normal.") == ("", "Normal.")
    assert as_written_order(text) == "FINDINGS: Lungs clear. IMPRESSION: Normal."
    for unchanged in ("FINDINGS: Lungs clear. IMPRESSION: Normal.", "IMPRESSION: Normal.", "free text", ""):
        assert as_written_order(unchanged) == unchanged
