"""A fixed-template report from binary findings: what a plain classifier can write.

    from radllm.evaluation.template_report import template_report
    template_report({"Cardiomegaly": 1, "Pleural Effusion": 0})
    # "FINDINGS: Cardiomegaly is present. No pleural effusion. IMPRESSION: Cardiomegaly."

FINDINGS holds one fixed sentence per stated observation, the positives first, then the
negatives, each group in CheXpert order; IMPRESSION lists the positives, or says
`TEMPLATE_NORMAL_IMPRESSION` when there are none. There are no sides, sizes or severities: a
multi-label classifier does not give them, and wording it never chose would be credited or
blamed on it by the NLG metrics.

The phrases are chosen so that radllm's rule labeler (`radllm.labeler.label_report`) reads back
exactly the stated findings: a positive sentence -> 1, a negative sentence -> 0, an unstated
observation -> blank (tested for every observation and for combinations). "No Finding" is not
stated: the labeler derives it from the others (1 when nothing but Support Devices is positive),
the CheXpert convention that references and generated reports are labelled under too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from radllm.errors import RadllmError
from radllm.labeler.labeler import NO_FINDING
from radllm.labels import OBSERVATIONS
from radllm.report_text import report_text


class Phrases(NamedTuple):
    """The fixed wording of one observation."""

    positive: str  # FINDINGS sentence when predicted present
    negative: str  # FINDINGS sentence when predicted absent
    impression: str  # item of the IMPRESSION list of positives


#: observation -> its phrases (every CheXpert observation but No Finding, which is derived).
TEMPLATE: dict[str, Phrases] = {
    "Enlarged Cardiomediastinum": Phrases(
        "Enlarged cardiomediastinum is present.", "No enlarged cardiomediastinum.", "enlarged cardiomediastinum"
    ),
    "Cardiomegaly": Phrases("Cardiomegaly is present.", "No cardiomegaly.", "cardiomegaly"),
    "Lung Opacity": Phrases("Lung opacity is present.", "No lung opacity.", "lung opacity"),
    "Lung Lesion": Phrases("A lung nodule is present.", "No lung nodule.", "lung nodule"),
    "Edema": Phrases("Pulmonary edema is present.", "No pulmonary edema.", "pulmonary edema"),
    "Consolidation": Phrases("Consolidation is present.", "No consolidation.", "consolidation"),
    "Pneumonia": Phrases("Pneumonia is present.", "No pneumonia.", "pneumonia"),
    "Atelectasis": Phrases("Atelectasis is present.", "No atelectasis.", "atelectasis"),
    "Pneumothorax": Phrases("Pneumothorax is present.", "No pneumothorax.", "pneumothorax"),
    "Pleural Effusion": Phrases("Pleural effusion is present.", "No pleural effusion.", "pleural effusion"),
    "Pleural Other": Phrases("Pleural thickening is present.", "No pleural thickening.", "pleural thickening"),
    "Fracture": Phrases("A fracture is present.", "No fracture.", "fracture"),
    "Support Devices": Phrases("Support devices are present.", "No support devices.", "support devices"),
}

#: IMPRESSION of a report with no positive finding (the phantoms' first normal impression; the
#: labeler reads no observation from it).
TEMPLATE_NORMAL_IMPRESSION = "No acute cardiopulmonary abnormality."


def template_report(stated: Mapping[str, int]) -> str:
    """The template report of `stated` (observation -> 1 present / 0 absent); others unmentioned.

    A "No Finding" entry is ignored (see the module docstring).

    Raises:
        RadllmError: an unknown observation or a value other than 0 / 1.
    """
    unknown = [name for name in stated if name not in TEMPLATE and name != NO_FINDING]
    if unknown:
        raise RadllmError(f"template report: unknown observation(s) {unknown}; expected names from {list(OBSERVATIONS)}")
    bad = {name: value for name, value in stated.items() if value not in (0, 1)}
    if bad:
        raise RadllmError(f"template report: findings must be 0 or 1, got {bad}")
    positives = [name for name in TEMPLATE if stated.get(name) == 1]
    negatives = [name for name in TEMPLATE if stated.get(name) == 0]
    findings = " ".join([TEMPLATE[n].positive for n in positives] + [TEMPLATE[n].negative for n in negatives])
    if positives:
        items = ", ".join(TEMPLATE[n].impression for n in positives)
        impression = items[0].upper() + items[1:] + "."
    else:
        impression = TEMPLATE_NORMAL_IMPRESSION
    return report_text(findings, impression)
