"""Report coherence, strict clinical F1, and the side/severity of found findings, on hand-written reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radllm.clinical_efficacy import clinical_efficacy
from radllm.errors import RadllmError
from radllm.evaluation.attributes import FindingAttributes, attribute_metrics, ground_truth_attributes, stated_attributes
from radllm.evaluation.clinical import pair_counts
from radllm.labeler.coherence import coherence_metrics, offending_sentences, read_coherence, split_sentences
from radllm.evaluation.inputs import Reference
from radllm.evaluation.reports import score_reports
from radllm.labeler import default_labeler
from radllm.labeler.attributes import BOTH_SIDES, parse_severity
from radllm.labels import OBSERVATIONS, empty_labels
from radllm.phantoms.dataset import study_rng
from radllm.phantoms.ground_truth import attributes_for
from radllm.phantoms.report import write_report
from radllm.phantoms.sampling import sample_study


def _reading(report: str):
    return read_coherence([report])[0]


def _contradicted(report: str) -> set[str]:
    return set(_reading(report).contradicted)


# --- contradiction ----------------------------------------------------------------------------


def test_a_negation_list_contradicts_only_the_finding_affirmed_elsewhere() -> None:
    report = "FINDINGS: No pleural effusion or pneumothorax. IMPRESSION: Small left pneumothorax."
    assert _contradicted(report) == {"Pneumothorax"}
    reading = _reading(report)
    assert offending_sentences(reading) == {0: "negates Pneumothorax", 1: "affirms Pneumothorax"}


def test_uncertainty_against_a_negation_is_a_contradiction() -> None:
    assert _contradicted("FINDINGS: Heart size is normal. IMPRESSION: Possible mild cardiomegaly.") == {"Cardiomegaly"}
    assert _contradicted("FINDINGS: No focal consolidation. Consolidation in the left upper lobe cannot be excluded.") == {"Consolidation"}


def test_contradiction_inside_one_section_and_across_both() -> None:
    assert _contradicted("FINDINGS: No focal consolidation. Dense consolidation in the right lower lobe.") == {"Consolidation"}
    assert _contradicted("FINDINGS: No focal consolidation. IMPRESSION: Right lower lobe consolidation.") == {"Consolidation"}
    # impression-first order reads the same
    assert _contradicted("IMPRESSION: Right lower lobe consolidation. FINDINGS: No focal consolidation.") == {"Consolidation"}


def test_different_sides_are_no_contradiction_but_a_sideless_negation_is() -> None:
    assert _contradicted("FINDINGS: No right pleural effusion. Small left pleural effusion.") == set()
    assert _contradicted("FINDINGS: No pleural effusion. Small left pleural effusion.") == {"Pleural Effusion"}
    assert _contradicted("FINDINGS: No left pleural effusion. Small bilateral pleural effusions.") == {"Pleural Effusion"}


def test_consistent_reports_and_one_sentence_are_not_contradictions() -> None:
    assert _contradicted("FINDINGS: Moderate cardiomegaly. No pleural effusion. IMPRESSION: Moderate cardiomegaly.") == set()
    # one sentence that both negates and affirms is the labeler's business, not a contradiction between sentences
    assert _contradicted("FINDINGS: No effusion but there is a small left effusion.") == set()
    # "No Finding" is derived, never contradicted
    assert _contradicted("FINDINGS: The lungs are clear. IMPRESSION: Small right pneumothorax.") == set()


# --- repetition, side consistency, distinct reports ---------------------------------------------


def test_a_sentence_said_twice_in_one_section_is_a_repeat_but_restating_it_in_the_impression_is_not() -> None:
    repeated = _reading("FINDINGS: No focal consolidation. Heart size is normal. No focal  consolidation! IMPRESSION: Normal chest.")
    assert repeated.repeated == [2]
    assert offending_sentences(repeated) == {2: "repeated"}
    assert _reading("FINDINGS: Moderate cardiomegaly. IMPRESSION: Moderate cardiomegaly.").repeated == []


def test_side_consistency_between_sections() -> None:
    same = _reading("FINDINGS: Small left pleural effusion. IMPRESSION: Left pleural effusion.")
    assert same.sided_in_both == ["Pleural Effusion"] and same.side_conflicts == []
    swapped = _reading("FINDINGS: Small left pleural effusion. Right lower lobe consolidation. "
                       "IMPRESSION: Right pleural effusion. Right lower lobe consolidation.")
    assert swapped.sided_in_both == ["Consolidation", "Pleural Effusion"]
    assert [(c.observation, c.findings, c.impression) for c in swapped.side_conflicts] == [("Pleural Effusion", "left", "right")]
    unsided = _reading("FINDINGS: Small left pleural effusion. IMPRESSION: Pleural effusion.")
    assert unsided.sided_in_both == [] and unsided.side_conflicts == []


def test_an_impression_finding_no_findings_sentence_affirms_is_unsupported() -> None:
    assert _reading("FINDINGS: No focal consolidation. IMPRESSION: Small right pneumothorax. Mild cardiomegaly.").unsupported == [
        "Cardiomegaly", "Pneumothorax"]  # in OBSERVATIONS order
    assert _reading("FINDINGS: There is a small right pneumothorax. IMPRESSION: Right pneumothorax.").unsupported == []
    assert _reading("FINDINGS: Possible small right pneumothorax. IMPRESSION: Right pneumothorax.").unsupported == []
    # a negated mention does not support, and a report without findings has nothing to check
    assert _reading("FINDINGS: No pneumothorax. IMPRESSION: Right pneumothorax.").unsupported == ["Pneumothorax"]
    assert _reading("IMPRESSION: Right pneumothorax.").unsupported == []
    # an interpretation of what the findings describe is supported (INFERRED_FROM), not the reverse
    assert _reading("FINDINGS: Right upper lobe consolidation. IMPRESSION: Possible pneumonia.").unsupported == []
    assert _reading("FINDINGS: Possible pneumonia. IMPRESSION: Right upper lobe consolidation.").unsupported == ["Consolidation"]


def test_coherence_metrics_of_a_small_set() -> None:
    reports = [
        "FINDINGS: No pneumothorax. IMPRESSION: Small right pneumothorax.",  # contradiction
        "FINDINGS: Heart size is normal. Heart size is normal. IMPRESSION: Normal chest.",  # repeat
        "FINDINGS: Small left pleural effusion. IMPRESSION: Right pleural effusion.",  # side conflict
        "FINDINGS: Small left pleural effusion. IMPRESSION: Left pleural effusion.",
        "FINDINGS: Small left pleural effusion. IMPRESSION: Left pleural effusion.",
    ]
    metrics = coherence_metrics(reports, read_coherence(reports))
    assert metrics["contradiction_rate"] == pytest.approx(1 / 5)
    assert metrics["contradiction_rate/pneumothorax"] == pytest.approx(1 / 5)
    assert "contradiction_rate/pleural_effusion" not in metrics
    assert metrics["repeat_rate"] == pytest.approx(1 / 5)
    assert metrics["side_consistency_n"] == 3 and metrics["side_consistency"] == pytest.approx(2 / 3)
    assert metrics["distinct_fraction"] == pytest.approx(4 / 5)
    assert metrics["n_sentences_mean"] == pytest.approx(11 / 5)


def test_sentences_keep_decimals_and_sections() -> None:
    assert split_sentences("FINDINGS: A 1.5 cm nodule in the left upper lung. No effusion. IMPRESSION: Nodule.") == [
        ("findings", "A 1.5 cm nodule in the left upper lung."), ("findings", "No effusion."), ("impression", "Nodule.")]


def test_phantom_references_are_coherent() -> None:
    """The reports phantoms are written from: no contradiction, no repeat, the same side in both sections."""
    reports = []
    for index in range(300):
        rng = study_rng(5, index)
        reports.append(write_report(sample_study(rng).findings, rng).text)
    metrics = coherence_metrics(reports, read_coherence(reports))
    assert metrics["contradiction_rate"] == 0 and metrics["repeat_rate"] == 0
    assert metrics["side_consistency"] == 1.0 and metrics["side_consistency_n"] > 100
    assert not any(reading.unsupported for reading in read_coherence(reports))


# --- strict clinical F1 ---------------------------------------------------------------------------


def _labels(**values: int) -> dict:
    labels = empty_labels()
    for key, value in values.items():
        labels[key.replace("_", " ").title()] = value
    return labels


def test_strict_f1_counts_a_contradicted_finding_as_an_error_whichever_way_the_reference_goes() -> None:
    # study 0: effusion affirmed and negated, reference positive -> CheXpert tp, strict fn
    # study 1: pneumothorax affirmed and negated, reference negative -> fp either way
    # study 2: cardiomegaly found cleanly -> tp
    predicted = [_labels(pleural_effusion=1), _labels(pneumothorax=1), _labels(cardiomegaly=1)]
    reference = [_labels(pleural_effusion=1), _labels(pneumothorax=0, cardiomegaly=1), _labels(cardiomegaly=1)]
    contradicted = [{"Pleural Effusion"}, {"Pneumothorax"}, set()]
    scores = clinical_efficacy(predicted, reference, "positive", contradicted)
    # present: effusion, cardiomegaly. CheXpert: tp 2 (effusion, cardio s2), fn 1 (cardio s1) -> 4/5
    assert scores["ce_f1_micro_present"] == pytest.approx(4 / 5)
    # strict: effusion becomes fn -> tp 1, fn 2 -> 2/4
    assert scores["ce_f1_micro_present_strict"] == pytest.approx(2 / 4)
    # strict macro: effusion F1 0, cardiomegaly 2/3
    assert scores["ce_f1_macro_present_strict"] == pytest.approx((0 + 2 / 3) / 2)
    strict = pair_counts(predicted, reference, OBSERVATIONS, "positive", contradicted)
    pneumothorax = OBSERVATIONS.index("Pneumothorax")
    assert strict[1, pneumothorax].tolist() == [0, 1, 0, 0]  # fp


def test_f1_without_no_finding_leaves_out_normal_studies_said_normal() -> None:
    predicted = [_labels(no_finding=1), _labels(cardiomegaly=1), _labels(no_finding=1)]
    reference = [_labels(no_finding=1), _labels(cardiomegaly=1), _labels(cardiomegaly=1)]
    scores = clinical_efficacy(predicted, reference, "positive")
    assert scores["ce_f1_micro_present"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2 (nf, cardio), fp 1 (nf), fn 1
    assert scores["ce_f1_micro_present_excl_no_finding"] == pytest.approx(2 / 3)  # cardio: tp 1, fn 1


def test_report_metrics_strict_and_section_keys() -> None:
    refs = {
        "a": Reference("a", "FINDINGS: Small left pleural effusion. IMPRESSION: Left pleural effusion."),
        "b": Reference("b", "FINDINGS: Moderate cardiomegaly. No pleural effusion. IMPRESSION: Moderate cardiomegaly."),
    }
    records = [
        {"study_id": "a", "report": "FINDINGS: No pleural effusion. IMPRESSION: Small left pleural effusion."},
        {"study_id": "b", "report": "FINDINGS: Moderate cardiomegaly. No pleural effusion. IMPRESSION: Moderate cardiomegaly."},
    ]
    m = score_reports(records, refs, "positive", "labeler", default_labeler(), meteor=False).metrics
    assert m["report/ce_f1_micro_present"] == 1.0
    assert m["report/ce_f1_micro_present_strict"] == pytest.approx(2 / 3)  # effusion of a: fn
    assert m["report/contradiction_rate"] == 0.5
    # findings alone: a's findings negate the effusion (fn), b's state cardiomegaly (tp) -> 2/3
    assert m["report/findings_section/ce_f1_micro_present"] == pytest.approx(2 / 3)
    assert m["report/impression_section/ce_f1_micro_present"] == 1.0
    # side and severity of found findings, read from the reference's words: a left / mild, b moderate
    assert m["report/side_match"] == 1.0 and m["report/side_match_n"] == 1
    assert m["report/severity_match"] == 1.0 and m["report/severity_match_n"] == 2


# --- side and severity ----------------------------------------------------------------------------


def test_labeler_attaches_the_nearest_side_and_severity_within_a_clause() -> None:
    mentions = default_labeler().mentions(
        "Small right pleural effusion and left lower lobe atelectasis. The heart is moderately enlarged. "
        "Consolidation in the left upper lobe. Left effusion and pneumothorax. Displaced left posterior 6th, 7th and 8th ribs "
        "fractures. Bibasilar atelectasis. Large pneumothorax.")
    read = [(m.observation, m.sides, m.severity) for m in mentions]
    assert read == [
        ("Pleural Effusion", {"right"}, "mild"), ("Atelectasis", {"left"}, None), ("Cardiomegaly", set(), "moderate"),
        ("Consolidation", {"left"}, None), ("Pleural Effusion", {"left"}, None), ("Pneumothorax", set(), None),
        ("Fracture", {"left"}, None), ("Atelectasis", BOTH_SIDES, None), ("Pneumothorax", set(), "severe"),
    ]


def test_phantom_reports_state_the_ground_truth_sides_and_severities() -> None:
    """`attributes_for` (the manifest's meta) and what the rules read in the report agree on every present finding."""
    labeler = default_labeler()
    checked = 0
    for index in range(400):
        rng = study_rng(7, index)
        spec = sample_study(rng)
        truth = ground_truth_attributes(attributes_for(spec.findings), "phantom")
        said = stated_attributes(labeler.mentions(write_report(spec.findings, rng).text))
        for name, attributes in truth.items():
            assert said[name].sides == attributes.sides or not attributes.sides
            assert said[name].severities == attributes.severities or not attributes.severities
            checked += 1
    assert checked > 300


def test_attribute_metrics_hand_computed() -> None:
    left, right = frozenset({"left"}), frozenset({"right"})
    mild = frozenset({"mild"})
    reference = [{"Pleural Effusion": FindingAttributes(left, mild)}, {"Pneumothorax": FindingAttributes(right, frozenset({"severe"}))},
                 {"Pleural Effusion": FindingAttributes(left)}]
    predicted = [{"Pleural Effusion": FindingAttributes(left, mild)}, {"Pneumothorax": FindingAttributes(right | left, mild)},
                 {"Pleural Effusion": FindingAttributes()}]
    found = [["Pleural Effusion"], ["Pneumothorax"], []]  # study 2's effusion was missed: not scored
    m = attribute_metrics(predicted, reference, found)
    assert (m["side_match"], m["side_match_n"]) == (0.5, 2)
    assert m["side_match/pleural_effusion"] == 1.0 and m["side_match/pneumothorax"] == 0.0
    assert (m["severity_match"], m["severity_match_n"]) == (0.5, 2)
    assert attribute_metrics([{}], [{}], [[]])["side_match"] is None


def test_ground_truth_attributes_errors_name_the_bad_value() -> None:
    with pytest.raises(RadllmError, match="Pleural Effusion.*side 'middle'"):
        ground_truth_attributes({"Pleural Effusion": {"side": "middle"}}, "m.jsonl")
    with pytest.raises(RadllmError, match="'Lung'"):
        ground_truth_attributes({"Lung": {"side": "left"}}, "m.jsonl")
    with pytest.raises(ValueError, match="severity 'huge'"):
        parse_severity("huge")


def test_manifest_ground_truth_reaches_the_references(tmp_path: Path) -> None:
    from radllm.evaluation.inputs import load_references
    from radllm.phantoms.dataset import generate_phantoms

    manifest = generate_phantoms(tmp_path / "p", n=10, size=64, seed=2, progress=False, split="test")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {row["split"] for row in rows} == {"test"}
    refs = load_references(manifest)
    for row in rows:
        expected = ground_truth_attributes(row["meta"]["finding_attributes"], "x")
        assert refs[row["study_id"]].attributes == expected
