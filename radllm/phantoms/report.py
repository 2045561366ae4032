"""Write an IU X-Ray-style report (FINDINGS, IMPRESSION) from a `FindingSpec`.

The findings section has one sentence per present finding, one per explicit negative (some
negatives merged, e.g. "No pleural effusion or pneumothorax."), optional normal fillers, in a
randomly chosen section order with shuffled sentences inside each part. The impression
summarises the positive and hedged findings by priority, or says the chest is normal. Text is
already in the cleaned form `radllm.report_text.clean_report` gives prepared datasets (one line,
no list numbering), and `text` is built by the shared `report_text`. The
random generator only chooses wording and order: which observations are mentioned, and with what
polarity, is fixed by the spec (see `labels_for`).
"""

from __future__ import annotations

import numpy as np

from radllm.manifest import Report
from radllm.report_text import report_text
from radllm.phantoms import phrases
from radllm.phantoms.spec import LOBE_NAMES, FindingSpec

#: Orders in which the parts of the findings section may appear.
SECTION_ORDERS: tuple[tuple[str, ...], ...] = (
    ("devices", "cardiac", "lungs", "pleura", "bones"),
    ("cardiac", "lungs", "pleura", "bones", "devices"),
    ("lungs", "pleura", "cardiac", "bones", "devices"),
    ("devices", "lungs", "pleura", "cardiac", "bones"),
)
#: Where each negated observation is said.
NEGATION_PART = {
    "Cardiomegaly": "cardiac",
    "Enlarged Cardiomediastinum": "cardiac",
    "Lung Opacity": "lungs",
    "Consolidation": "lungs",
    "Edema": "lungs",
    "Pneumonia": "lungs",
    "Lung Lesion": "lungs",
    "Atelectasis": "lungs",
    "Pneumothorax": "pleura",
    "Pleural Effusion": "pleura",
    "Fracture": "bones",
}
#: Merged negations tried first (largest first), each with the probability of using it.
MERGED_NEGATIONS: tuple[tuple[frozenset[str], float], ...] = (
    (frozenset({"Consolidation", "Pleural Effusion", "Pneumothorax"}), 0.35),
    (frozenset({"Pleural Effusion", "Pneumothorax"}), 0.6),
    (frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"}), 0.5),
    (frozenset({"Lung Opacity", "Consolidation"}), 0.4),
)


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fill(template: str, **values: str) -> str:
    """Format `template`; a capitalised placeholder ({Side}) gets the value capitalised."""
    full = dict(values)
    for key, value in values.items():
        full[key[0].upper() + key[1:]] = value[:1].upper() + value[1:]
    return template.format(**full)


class _Writer:
    """Collects sentences for one report; `pick` draws a template from the shared generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.parts: dict[str, list[str]] = {name: [] for name in SECTION_ORDERS[0]}
        self.impression: list[str] = []

    def pick(self, templates: tuple[str, ...], **values: str) -> str:
        return fill(templates[int(self.rng.integers(len(templates)))], **values)


def write_report(findings: FindingSpec, rng: np.random.Generator) -> Report:
    """Report text for `findings`; `rng` chooses wording and sentence order."""
    w = _Writer(rng)
    _cardiac(w, findings)
    _pleura(w, findings)
    _airspace(w, findings)
    _lesion(w, findings)
    _atelectasis(w, findings)
    _fracture(w, findings)
    devices_said = _devices(w, findings)
    _negations(w, findings)
    _fillers(w, findings)

    order = SECTION_ORDERS[int(rng.integers(len(SECTION_ORDERS)))]
    sentences: list[str] = []
    for part in order:
        sentences += [w.parts[part][i] for i in rng.permutation(len(w.parts[part]))]
    findings_text = " ".join(sentences)

    if w.impression:
        items = list(w.impression)
        if devices_said and rng.random() < 0.5:
            items.append(w.pick(phrases.DEVICES_IMPRESSION))
        impression = " ".join(items)
    else:
        normal = w.pick(phrases.NORMAL_IMPRESSION)
        impression = f"{w.pick(phrases.DEVICES_IMPRESSION)} {normal}" if devices_said else normal
    return Report(findings=findings_text, impression=impression, text=report_text(findings_text, impression))


def _severity_adverb(severity: str) -> str:
    return {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}[severity]


def _cardiac(w: _Writer, f: FindingSpec) -> None:
    c = f.cardiomegaly
    if c is None:
        return
    if c.hedged:
        w.parts["cardiac"].append(w.pick(phrases.CARDIOMEGALY_HEDGED))
        w.impression.append(w.pick(phrases.CARDIOMEGALY_IMPRESSION_HEDGED))
        return
    values = {"sev": c.severity, "sev_adv": _severity_adverb(c.severity)}
    w.parts["cardiac"].append(w.pick(phrases.CARDIOMEGALY, **values))
    w.impression.append(w.pick(phrases.CARDIOMEGALY_IMPRESSION, **values))


def _pleura(w: _Writer, f: FindingSpec) -> None:
    p = f.pneumothorax
    if p is not None:
        values = {"side": p.side, "sev": p.severity, "where": "apical " if p.severity == "small" else ""}
        if p.hedged:
            w.parts["pleura"].append(w.pick(phrases.PNEUMOTHORAX_HEDGED, **values))
            w.impression.insert(0, w.pick(phrases.PNEUMOTHORAX_IMPRESSION_HEDGED, **values))
        else:
            w.parts["pleura"].append(w.pick(phrases.PNEUMOTHORAX, **values))
            w.impression.insert(0, w.pick(phrases.PNEUMOTHORAX_IMPRESSION, **values))
    e = f.effusion
    if e is not None:
        values = {"side": e.side, "sev": e.severity}
        both = e.side == "bilateral"
        if e.hedged:
            body = phrases.EFFUSION_BILATERAL_HEDGED if both else phrases.EFFUSION_HEDGED
            summary = phrases.EFFUSION_BILATERAL_IMPRESSION_HEDGED if both else phrases.EFFUSION_IMPRESSION_HEDGED
        else:
            body = phrases.EFFUSION_BILATERAL if both else phrases.EFFUSION
            summary = phrases.EFFUSION_BILATERAL_IMPRESSION if both else phrases.EFFUSION_IMPRESSION
        w.parts["pleura"].append(w.pick(body, **values))
        w.impression.append(w.pick(summary, **values))


def _airspace(w: _Writer, f: FindingSpec) -> None:
    a = f.airspace
    if a is None:
        return
    values = {"lobe": LOBE_NAMES[a.lobe]}
    if a.kind == "consolidation":
        w.parts["lungs"].append(w.pick(phrases.CONSOLIDATION, **values))
        w.impression.append(f"{w.pick(phrases.CONSOLIDATION_IMPRESSION, **values)} {w.pick(phrases.PNEUMONIA_HEDGED)}")
    elif a.hedged:
        w.parts["lungs"].append(w.pick(phrases.OPACITY_HEDGED, **values))
        w.impression.append(w.pick(phrases.OPACITY_IMPRESSION_HEDGED, **values))
    else:
        w.parts["lungs"].append(w.pick(phrases.OPACITY, **values))
        w.impression.append(w.pick(phrases.OPACITY_IMPRESSION, **values))


def _lesion(w: _Writer, f: FindingSpec) -> None:
    n = f.lesion
    if n is None:
        return
    values = {"side": n.side, "zone": n.zone, "size": f"{n.diameter_cm:.1f}", "kind": n.kind}
    if n.hedged:
        w.parts["lungs"].append(w.pick(phrases.NODULE_HEDGED, **values))
        w.impression.append(w.pick(phrases.LESION_IMPRESSION_HEDGED, **values))
        return
    w.parts["lungs"].append(w.pick(phrases.MASS if n.kind == "mass" else phrases.NODULE, **values))
    w.impression.append(w.pick(phrases.LESION_IMPRESSION, **values))


def _atelectasis(w: _Writer, f: FindingSpec) -> None:
    a = f.atelectasis
    if a is None:
        return
    values = {"side": a.side}
    both = a.side == "bilateral"
    if a.hedged:
        body = phrases.ATELECTASIS_BILATERAL_HEDGED if both else phrases.ATELECTASIS_HEDGED
        summary = phrases.ATELECTASIS_BILATERAL_IMPRESSION_HEDGED if both else phrases.ATELECTASIS_IMPRESSION_HEDGED
    elif a.kind == "volume loss":
        body, summary = phrases.ATELECTASIS_VOLUME_LOSS, phrases.ATELECTASIS_VOLUME_LOSS_IMPRESSION
    else:
        body = phrases.ATELECTASIS_BILATERAL if both else phrases.ATELECTASIS
        summary = phrases.ATELECTASIS_BILATERAL_IMPRESSION if both else phrases.ATELECTASIS_IMPRESSION
    w.parts["lungs"].append(w.pick(body, **values))
    w.impression.append(w.pick(summary, **values))


def _fracture(w: _Writer, f: FindingSpec) -> None:
    fx = f.fracture
    if fx is None:
        return
    ordinals = [ordinal(n) for n in fx.ribs]
    plural = len(ordinals) > 1
    values = {
        "side": fx.side,
        "ribs": " and ".join([", ".join(ordinals[:-1]), ordinals[-1]]) if plural else ordinals[0],
        "rib_word": "ribs" if plural else "rib",
        "fracture_word": "fractures" if plural else "fracture",
        "displaced": "displaced" if fx.displaced else "nondisplaced",
        "is_a": "are" if plural else "is a",
    }
    if fx.hedged:
        w.parts["bones"].append(w.pick(phrases.FRACTURE_HEDGED, **values))
        w.impression.append(w.pick(phrases.FRACTURE_IMPRESSION_HEDGED, **values))
    else:
        w.parts["bones"].append(w.pick(phrases.FRACTURE, **values))
        w.impression.append(w.pick(phrases.FRACTURE_IMPRESSION, **values))


def _devices(w: _Writer, f: FindingSpec) -> bool:
    d = f.devices
    if d.endotracheal_tube:
        w.parts["devices"].append(w.pick(phrases.ETT, cm=f"{d.ett_above_carina_cm:g}"))
    if d.central_line is not None:
        w.parts["devices"].append(w.pick(phrases.CENTRAL_LINE, route=d.central_line))
    if d.enteric_tube:
        w.parts["devices"].append(w.pick(phrases.ENTERIC_TUBE))
    return d.any


def _negations(w: _Writer, f: FindingSpec) -> None:
    remaining = set(f.negated)
    for group, p in MERGED_NEGATIONS:
        if group <= remaining and w.rng.random() < p:
            part = NEGATION_PART[min(group)] if len({NEGATION_PART[n] for n in group}) == 1 else "pleura"
            w.parts[part].append(w.pick(phrases.NEGATIONS[group]))
            remaining -= group
    for name in sorted(remaining):
        w.parts[NEGATION_PART[name]].append(w.pick(phrases.NEGATIONS[frozenset({name})]))


def _fillers(w: _Writer, f: FindingSpec) -> None:
    """Normal statements that name no observation (so they carry no label)."""
    chest_clear = f.airspace is None and f.lesion is None and f.atelectasis is None and f.effusion is None and f.pneumothorax is None
    if chest_clear and (w.rng.random() < 0.6 or not any(w.parts.values())):
        w.parts["lungs"].append(w.pick(phrases.LUNGS_CLEAR))
    if f.fracture is None and w.rng.random() < 0.3:
        w.parts["bones"].append(w.pick(phrases.BONES_UNREMARKABLE))
