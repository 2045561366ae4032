"""Draw random studies: which findings (with what laterality/severity), anatomy and exposure.

Prevalence: `P_NORMAL` of studies have no pathology; the rest get each pathology independently
with `P_FINDING` (redrawn until at least one is present), which puts every finding at roughly
20 % of all studies. Support devices are independent of pathology (`P_DEVICES`). Combinations
that would hide one finding behind another (a lower-lobe consolidation under a large effusion,
a nodule in a collapsed lung) are steered apart so every labelled finding stays visible.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from radllm.labels import OBSERVATIONS
from radllm.phantoms.spec import (
    LOBES,
    Acquisition,
    AirspaceDisease,
    Anatomy,
    Atelectasis,
    Cardiomegaly,
    FindingSpec,
    LungLesion,
    PleuralEffusion,
    Pneumothorax,
    RibFracture,
    StudySpec,
    SupportDevices,
    lobe_side,
)

P_NORMAL = 0.3
P_FINDING = 0.24
P_DEVICES = 0.18
#: Probability that the report explicitly negates an observation that is absent.
P_NEGATED: dict[str, float] = {
    "Enlarged Cardiomediastinum": 0.35,
    "Cardiomegaly": 0.85,
    "Lung Opacity": 0.3,
    "Lung Lesion": 0.2,
    "Edema": 0.25,
    "Consolidation": 0.6,
    "Pneumonia": 0.2,
    "Atelectasis": 0.1,
    "Pneumothorax": 0.85,
    "Pleural Effusion": 0.85,
    "Fracture": 0.25,
}

PATHOLOGIES = ("cardiomegaly", "effusion", "pneumothorax", "airspace", "lesion", "atelectasis", "fracture")


def _choice(rng: np.random.Generator, options: tuple | list, p: tuple | list | None = None):
    return options[int(rng.choice(len(options), p=p))]


def _other(side: str) -> str:
    return "left" if side == "right" else "right"


def sample_findings(rng: np.random.Generator) -> FindingSpec:
    """Random findings, hedges and the absent observations the report will negate."""
    present: set[str] = set()
    if rng.random() >= P_NORMAL:
        while not present:
            present = {name for name, hit in zip(PATHOLOGIES, rng.random(len(PATHOLOGIES)) < P_FINDING) if hit}

    cardiomegaly = effusion = pneumothorax = airspace = lesion = atelectasis = fracture = None
    if "cardiomegaly" in present:
        hedged = bool(rng.random() < 0.2)
        ctr = rng.uniform(0.53, 0.55) if hedged else rng.uniform(0.57, 0.66)
        cardiomegaly = Cardiomegaly(ctr=round(float(ctr), 4), hedged=hedged)
    if "pneumothorax" in present:
        severity = _choice(rng, ("small", "moderate", "large"), (0.45, 0.35, 0.2))
        pneumothorax = Pneumothorax(
            side=_choice(rng, ("right", "left")),
            severity=severity,
            hedged=bool(severity == "small" and rng.random() < 0.35),
        )
    if "effusion" in present:
        side = _choice(rng, ("right", "left", "bilateral"), (0.4, 0.35, 0.25))
        if pneumothorax is not None:  # no hydropneumothorax: fluid on the other side only
            side = _other(pneumothorax.side)
        severity = _choice(rng, ("small", "moderate", "large"), (0.4, 0.4, 0.2))
        effusion = PleuralEffusion(side=side, severity=severity, hedged=bool(severity == "small" and rng.random() < 0.35))

    fluid_sides = set() if effusion is None else ({"right", "left"} if effusion.side == "bilateral" else {effusion.side})
    big_fluid = fluid_sides if effusion is not None and effusion.severity != "small" else set()
    ptx_side = {pneumothorax.side} if pneumothorax is not None else set()

    if "airspace" in present:
        lobes = [lb for lb in LOBES if lobe_side(lb) not in ptx_side and not (lobe_side(lb) in big_fluid and lb in ("RML", "RLL", "LLL"))]
        lobe = _choice(rng, lobes)
        kind = _choice(rng, ("consolidation", "opacity"))
        airspace = AirspaceDisease(
            lobe=lobe,
            kind=kind,
            extent=round(float(rng.uniform(0.6, 1.0)), 3),
            hedged=bool(kind == "opacity" and rng.random() < 0.25),
        )
    if "lesion" in present:
        sides = [s for s in ("right", "left") if s not in ptx_side]
        if airspace is not None and len(sides) > 1:
            sides = [s for s in sides if s != airspace.side]
        side = _choice(rng, sides)
        is_mass = rng.random() < 0.4
        diameter = rng.uniform(3.5, 6.0) if is_mass else rng.uniform(1.5, 2.9)
        low = 0.62 if side in fluid_sides else 0.72
        lesion = LungLesion(
            side=side,
            diameter_cm=round(float(diameter), 1),
            height=round(float(rng.uniform(0.22, low - (0.08 if is_mass else 0.0))), 3),
            lateral=round(float(rng.uniform(0.45, 0.65) if is_mass else rng.uniform(0.35, 0.75)), 3),
            hedged=bool(not is_mass and diameter < 2.0 and rng.random() < 0.5),
        )
    if "atelectasis" in present:
        sides = [s for s in ("right", "left") if s not in fluid_sides]
        if sides:
            side = "bilateral" if len(sides) == 2 and rng.random() < 0.3 else _choice(rng, sides)
            kind = "volume loss" if side != "bilateral" and rng.random() < 0.3 else "plate-like"
            atelectasis = Atelectasis(side=side, kind=kind, hedged=bool(kind == "plate-like" and rng.random() < 0.25))
    if "fracture" in present:
        displaced = bool(rng.random() < 0.7)
        count = int(_choice(rng, (1, 2, 3), (0.4, 0.4, 0.2)))
        fracture = RibFracture(
            side=_choice(rng, ("right", "left")),
            rib=int(rng.integers(4, 10 - count)),
            count=count,
            position=round(float(rng.uniform(0.55, 0.85)), 3),
            displaced=displaced,
            hedged=bool(not displaced and rng.random() < 0.5),
        )
    devices = sample_devices(rng)
    spec = FindingSpec(
        cardiomegaly=cardiomegaly,
        effusion=effusion,
        pneumothorax=pneumothorax,
        airspace=airspace,
        lesion=lesion,
        atelectasis=atelectasis,
        fracture=fracture,
        devices=devices,
    )
    return replace(spec, negated=sample_negations(spec, rng))


def sample_devices(rng: np.random.Generator) -> SupportDevices:
    """Tubes and lines for `P_DEVICES` of studies (at least one device when any)."""
    if rng.random() >= P_DEVICES:
        return SupportDevices()
    while True:
        ett, line, ng = rng.random(3) < (0.7, 0.6, 0.5)
        if ett or line or ng:
            break
    return SupportDevices(
        endotracheal_tube=bool(ett),
        ett_above_carina_cm=float(rng.integers(6, 13)) / 2.0,
        central_line=_choice(rng, ("right internal jugular", "left subclavian")) if line else None,
        enteric_tube=bool(ng),
    )


def sample_negations(spec: FindingSpec, rng: np.random.Generator) -> tuple[str, ...]:
    """Absent observations the report will state as absent, in `OBSERVATIONS` order.

    A negation is only allowed where it cannot contradict a present finding: no "no focal
    opacity" next to any parenchymal finding, no "no pneumonia" next to airspace disease, and no
    "normal mediastinum" beside an enlarged heart.
    """
    present = {
        "Cardiomegaly": spec.cardiomegaly is not None,
        "Enlarged Cardiomediastinum": spec.cardiomegaly is not None,
        "Pleural Effusion": spec.effusion is not None,
        "Pneumothorax": spec.pneumothorax is not None,
        "Lung Opacity": spec.airspace is not None or spec.lesion is not None or spec.atelectasis is not None,
        "Consolidation": spec.airspace is not None and spec.airspace.kind == "consolidation",
        "Pneumonia": spec.airspace is not None,
        "Lung Lesion": spec.lesion is not None,
        "Atelectasis": spec.atelectasis is not None,
        "Fracture": spec.fracture is not None,
        "Edema": False,
    }
    draws = rng.random(len(OBSERVATIONS))
    return tuple(
        name
        for name, u in zip(OBSERVATIONS, draws)
        if name in P_NEGATED and not present[name] and u < P_NEGATED[name]
    )


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Body habitus within normal limits (heart sized by a normal cardiothoracic ratio)."""
    apex = rng.uniform(0.12, 0.16)
    dome_right = rng.uniform(0.66, 0.72)
    hilum = apex + rng.uniform(0.25, 0.29)
    return Anatomy(
        midline=round(float(rng.uniform(0.49, 0.51)), 4),
        thorax_half_width=round(float(rng.uniform(0.35, 0.4)), 4),
        apex_y=round(float(apex), 4),
        dome_right_y=round(float(dome_right), 4),
        dome_left_y=round(float(dome_right + rng.uniform(0.01, 0.035)), 4),
        sulcus_depth=round(float(rng.uniform(0.07, 0.1)), 4),
        hilum_y=round(float(hilum), 4),
        carina_y=round(float(hilum - rng.uniform(0.04, 0.06)), 4),
        mediastinum_half_width=round(float(rng.uniform(0.055, 0.07)), 4),
        heart_right_fraction=round(float(rng.uniform(0.3, 0.37)), 4),
        normal_ctr=round(float(rng.uniform(0.39, 0.46)), 4),
        soft_tissue=round(float(rng.uniform(0.035, 0.07)), 4),
        gastric_bubble=bool(rng.random() < 0.6),
    )


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    """Positioning and exposure within what a technologist would accept."""
    return Acquisition(
        rotation_deg=round(float(rng.uniform(-3.0, 3.0)), 3),
        scale=round(float(rng.uniform(0.94, 1.04)), 4),
        shift_x=round(float(rng.uniform(-0.02, 0.02)), 4),
        shift_y=round(float(rng.uniform(-0.02, 0.02)), 4),
        exposure=round(float(rng.uniform(0.8, 1.3)), 3),
        gamma=round(float(rng.uniform(0.85, 1.2)), 3),
        noise=round(float(rng.uniform(0.01, 0.03)), 4),
        blur_px=round(float(rng.uniform(0.3, 0.9)), 3),
    )


def sample_study(rng: np.random.Generator) -> StudySpec:
    """Findings, anatomy and acquisition for one study, in that order of draws."""
    findings = sample_findings(rng)
    return StudySpec(anatomy=sample_anatomy(rng), acquisition=sample_acquisition(rng), findings=findings)
