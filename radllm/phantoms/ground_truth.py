"""CheXpert labels of a phantom study, derived from the same `FindingSpec` the report is written from.

Encoding as in `radllm.labels`: 1 present, -1 hedged (reported as possible), 0 explicitly negated,
None not mentioned. "No Finding" follows the CheXpert convention: 1 when no observation other than
Support Devices is 1 or -1, otherwise blank.
"""

from __future__ import annotations

from radllm.labeler.attributes import parse_severity
from radllm.labels import Labels, empty_labels
from radllm.phantoms.spec import FindingSpec


def labels_for(findings: FindingSpec) -> Labels:
    """The 14 CheXpert labels that `write_report(findings, ...)` expresses.

    Raises:
        ValueError: if `findings.negated` names an unknown observation or one that is present
            (the report would contradict itself).
    """
    labels = empty_labels()

    def mark(name: str, hedged: bool) -> None:
        labels[name] = -1 if hedged else 1

    f = findings
    if f.cardiomegaly is not None:
        mark("Cardiomegaly", f.cardiomegaly.hedged)
    if f.effusion is not None:
        mark("Pleural Effusion", f.effusion.hedged)
    if f.pneumothorax is not None:
        mark("Pneumothorax", f.pneumothorax.hedged)
    if f.airspace is not None:
        mark("Lung Opacity", f.airspace.hedged)
        if f.airspace.kind == "consolidation":
            mark("Consolidation", False)
            # Consolidation is reported with "may represent pneumonia" in the impression.
            mark("Pneumonia", True)
    if f.lesion is not None:
        mark("Lung Lesion", f.lesion.hedged)
    if f.atelectasis is not None:
        mark("Atelectasis", f.atelectasis.hedged)
    if f.fracture is not None:
        mark("Fracture", f.fracture.hedged)
    if f.devices.any:
        mark("Support Devices", False)
    for name in f.negated:
        if name not in labels or name == "No Finding":
            raise ValueError(f"finding spec negates {name!r}, which is not a negatable CheXpert observation")
        if labels[name] is not None:
            raise ValueError(f"finding spec negates {name!r}, which is present (label {labels[name]})")
        labels[name] = 0
    if not any(value in (1, -1) for name, value in labels.items() if name not in ("No Finding", "Support Devices")):
        labels["No Finding"] = 1
    return labels


def attributes_for(findings: FindingSpec) -> dict[str, dict[str, str]]:
    """Side and severity of each present finding, as the report states them: the manifest's
    ``meta.finding_attributes`` ({observation: {"side": right|left|bilateral, "severity":
    mild|moderate|severe}}, either key absent when the report gives none), which evaluation checks
    generated reports against (`radllm.evaluation.attributes`).

    Pneumonia (said only as "may represent pneumonia") and support devices carry no side.
    """
    out: dict[str, dict[str, str]] = {}
    f = findings
    if f.cardiomegaly is not None:
        out["Cardiomegaly"] = {"severity": parse_severity(f.cardiomegaly.severity)}
    if f.effusion is not None:
        out["Pleural Effusion"] = {"side": f.effusion.side, "severity": parse_severity(f.effusion.severity)}
    if f.pneumothorax is not None:
        out["Pneumothorax"] = {"side": f.pneumothorax.side, "severity": parse_severity(f.pneumothorax.severity)}
    if f.airspace is not None:
        out["Lung Opacity"] = {"side": f.airspace.side}
        if f.airspace.kind == "consolidation":
            out["Consolidation"] = {"side": f.airspace.side}
    for name, finding in (("Lung Lesion", f.lesion), ("Atelectasis", f.atelectasis), ("Fracture", f.fracture)):
        if finding is not None:
            out[name] = {"side": finding.side}
    return out
