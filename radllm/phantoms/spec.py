"""What one phantom study is: anatomy, acquisition and findings, as plain frozen dataclasses.

A `StudySpec` fully determines the drawn geometry (lung, heart and rib outlines, finding shapes)
and what the report says; the renderer only adds texture (vessel branching, noise) from its own
random generator. Keeping the spec separate from drawing means labels, report and image are all
derived from one object, so they cannot disagree.

Coordinates are normalised to the image: x in [0, 1] left to right, y in [0, 1] top to bottom, in
PA convention (the patient's right is on the image's left). One normalised unit is taken to be
`FIELD_OF_VIEW_CM` centimetres, which is how nodule sizes and tube distances map to pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Width of the imaged field in centimetres (a 14 x 14 inch detector is about 36 cm).
FIELD_OF_VIEW_CM = 36.0

Side = Literal["right", "left"]
Laterality = Literal["right", "left", "bilateral"]
Severity = Literal["small", "moderate", "large"]
Lobe = Literal["RUL", "RML", "RLL", "LUL", "LLL"]

LOBES: tuple[str, ...] = ("RUL", "RML", "RLL", "LUL", "LLL")
LOBE_NAMES: dict[str, str] = {
    "RUL": "right upper lobe",
    "RML": "right middle lobe",
    "RLL": "right lower lobe",
    "LUL": "left upper lobe",
    "LLL": "left lower lobe",
}


def lobe_side(lobe: str) -> Side:
    """The lung a lobe belongs to."""
    return "right" if lobe.startswith("R") else "left"


@dataclass(frozen=True)
class Cardiomegaly:
    """An enlarged heart; `ctr` is the cardiothoracic ratio the heart is drawn with (> 0.5).

    `hedged` marks a borderline heart (ratio just above 0.5) that the report calls "possible".
    """

    ctr: float
    hedged: bool = False

    @property
    def severity(self) -> str:
        if self.ctr < 0.56:
            return "mild"
        return "moderate" if self.ctr < 0.63 else "marked"


@dataclass(frozen=True)
class PleuralEffusion:
    """Dependent pleural fluid: blunted costophrenic angle, meniscus, dense base."""

    side: Laterality
    severity: Severity
    hedged: bool = False


@dataclass(frozen=True)
class Pneumothorax:
    """Air in the pleural space: a visceral pleural line with lucent, vessel-free lung beyond it."""

    side: Side
    severity: Severity
    hedged: bool = False


@dataclass(frozen=True)
class AirspaceDisease:
    """Lobar airspace disease: hazy patchy `opacity` or dense `consolidation` with air bronchograms.

    `extent` (0.5-1) is the fraction of the lobe zone involved. Only hazy opacities are hedged:
    consolidation is dense enough to be reported with certainty.
    """

    lobe: Lobe
    kind: Literal["opacity", "consolidation"]
    extent: float
    hedged: bool = False

    @property
    def side(self) -> Side:
        return lobe_side(self.lobe)


@dataclass(frozen=True)
class LungLesion:
    """A solitary nodule (< 3 cm) or mass (>= 3 cm).

    `height` (0 apex - 1 base) and `lateral` (0 medial - 1 lateral) place it inside the lung.
    """

    side: Side
    diameter_cm: float
    height: float
    lateral: float
    hedged: bool = False

    @property
    def kind(self) -> str:
        return "mass" if self.diameter_cm >= 3.0 else "nodule"

    @property
    def zone(self) -> str:
        return "upper" if self.height < 0.4 else ("mid" if self.height < 0.68 else "lower")


@dataclass(frozen=True)
class Atelectasis:
    """Basilar atelectasis: linear `plate-like` bands, or `volume loss` (elevated hemidiaphragm,
    retrocardiac/basal wedge and bands)."""

    side: Laterality
    kind: Literal["plate-like", "volume loss"]
    hedged: bool = False

    @property
    def dome_elevation(self) -> float:
        """How far (normalised) the hemidiaphragm on the affected side is raised."""
        return 0.05 if self.kind == "volume loss" else 0.0


@dataclass(frozen=True)
class RibFracture:
    """Fractures of `count` consecutive posterior ribs starting at rib `rib` (1 = first rib).

    `position` (0 medial - 1 lateral) is where along the posterior arc the cortex breaks;
    displaced fractures also step the lateral fragment off.
    """

    side: Side
    rib: int
    count: int
    position: float
    displaced: bool
    hedged: bool = False

    @property
    def ribs(self) -> tuple[int, ...]:
        return tuple(range(self.rib, self.rib + self.count))


@dataclass(frozen=True)
class SupportDevices:
    """Radiopaque tubes and lines. `ett_above_carina_cm` is where the endotracheal tube ends."""

    endotracheal_tube: bool = False
    ett_above_carina_cm: float = 4.0
    central_line: Literal["right internal jugular", "left subclavian"] | None = None
    enteric_tube: bool = False

    @property
    def any(self) -> bool:
        return self.endotracheal_tube or self.central_line is not None or self.enteric_tube


@dataclass(frozen=True)
class FindingSpec:
    """Everything the report states: the findings present and the observations stated absent.

    `negated` lists CheXpert observation names the report explicitly negates (e.g. "No
    pneumothorax."); observations neither present nor negated are not mentioned at all.
    """

    cardiomegaly: Cardiomegaly | None = None
    effusion: PleuralEffusion | None = None
    pneumothorax: Pneumothorax | None = None
    airspace: AirspaceDisease | None = None
    lesion: LungLesion | None = None
    atelectasis: Atelectasis | None = None
    fracture: RibFracture | None = None
    devices: SupportDevices = field(default_factory=SupportDevices)
    negated: tuple[str, ...] = ()

    @property
    def is_normal(self) -> bool:
        """True when no pathology is present (support devices do not count)."""
        return all(
            f is None
            for f in (
                self.cardiomegaly,
                self.effusion,
                self.pneumothorax,
                self.airspace,
                self.lesion,
                self.atelectasis,
                self.fracture,
            )
        )

    def to_json(self) -> dict[str, Any]:
        """Finding details for the manifest's `meta` (absent findings omitted)."""
        out: dict[str, Any] = {}
        for name in ("cardiomegaly", "effusion", "pneumothorax", "airspace", "lesion", "atelectasis", "fracture"):
            value = getattr(self, name)
            if value is not None:
                out[name] = asdict(value)
        if self.cardiomegaly is not None:
            out["cardiomegaly"]["severity"] = self.cardiomegaly.severity
        if self.lesion is not None:
            out["lesion"].update(kind=self.lesion.kind, zone=self.lesion.zone)
        if self.devices.any:
            out["devices"] = asdict(self.devices)
        out["negated"] = list(self.negated)
        return out


@dataclass(frozen=True)
class Anatomy:
    """Normal body habitus in normalised image coordinates (see module docstring).

    The heart is sized from a cardiothoracic ratio: `normal_ctr` for normal studies, replaced by
    `Cardiomegaly.ctr` when the heart is enlarged.
    """

    midline: float
    thorax_half_width: float
    apex_y: float
    dome_right_y: float
    dome_left_y: float
    sulcus_depth: float
    hilum_y: float
    carina_y: float
    mediastinum_half_width: float
    heart_right_fraction: float
    normal_ctr: float
    soft_tissue: float
    gastric_bubble: bool


@dataclass(frozen=True)
class Acquisition:
    """Exposure and positioning of one radiograph.

    `rotation_deg`, `scale` and `shift_*` place the patient on the detector; `exposure` is the
    attenuation-to-brightness gain, `gamma` the display curve, `noise` the quantum noise level
    and `blur_px` the unsharpness (in pixels at 256 px; scaled with image size).
    """

    rotation_deg: float
    scale: float
    shift_x: float
    shift_y: float
    exposure: float
    gamma: float
    noise: float
    blur_px: float


@dataclass(frozen=True)
class StudySpec:
    """One phantom study: who (anatomy), how it was imaged (acquisition), what it shows (findings)."""

    anatomy: Anatomy
    acquisition: Acquisition
    findings: FindingSpec

    @property
    def ctr(self) -> float:
        """Cardiothoracic ratio the heart is drawn with."""
        if self.findings.cardiomegaly is not None:
            return self.findings.cardiomegaly.ctr
        return self.anatomy.normal_ctr
