"""Lung and pleural findings, painted by how they change the radiograph.

Effusions and airspace disease displace lung air (the base or lobe turns white and hides the
vessels), a pneumothorax adds a vessel-free lucent rim beyond a thin visceral pleural line,
nodules and masses are round airless densities, and atelectasis draws dense linear bands and,
with volume loss, a raised hemidiaphragm (set in the geometry) and a basal wedge.
Cardiomegaly lives in the geometry (heart outline) and rib fractures in the bone painter.
"""

from __future__ import annotations

import numpy as np

from radllm.phantoms.anatomy import vessel_tree
from radllm.phantoms.geometry import SIDES, sign
from radllm.phantoms.raster import blur, polyline_distance, smooth_noise, smoothstep
from radllm.phantoms.scene import Scene
from radllm.phantoms.spec import (
    FIELD_OF_VIEW_CM,
    AirspaceDisease,
    Atelectasis,
    FindingSpec,
    LungLesion,
    PleuralEffusion,
    Pneumothorax,
)

Array = np.ndarray

#: Fluid height at the chest wall above the costophrenic angle (normalised units).
EFFUSION_HEIGHT = {"small": 0.13, "moderate": 0.21, "large": 0.33}
#: Lung shrink factor towards the hilum for each pneumothorax size.
COLLAPSE_FACTOR = {"small": 0.83, "moderate": 0.7, "large": 0.52}
#: Air fraction in a pneumothorax: above aerated lung's 1, as the lung tissue is gone as well.
PNEUMOTHORAX_LUCENCY = 1.2
#: Lobe zones in lung-relative coordinates: centre (height, lateral), radii, and a sharp edge
#: (fissure) as (height, "above" | "below") where the lobe stops at a fissure.
LOBE_ZONES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, str] | None]] = {
    "RUL": ((0.24, 0.55), (0.3, 0.65), (0.44, "above")),
    "RML": ((0.64, 0.25), (0.18, 0.5), (0.44, "below")),
    "RLL": ((0.76, 0.55), (0.24, 0.55), None),
    "LUL": ((0.3, 0.55), (0.32, 0.65), None),
    "LLL": ((0.76, 0.55), (0.24, 0.55), None),
}


def paint_findings(scene: Scene, findings: FindingSpec, rng: np.random.Generator) -> None:
    """Paint every lung/pleural finding of `findings`; records masks such as `effusion_left`."""
    if findings.airspace is not None:
        paint_airspace(scene, findings.airspace, rng)
    if findings.lesion is not None:
        paint_lesion(scene, findings.lesion, rng)
    if findings.atelectasis is not None:
        paint_atelectasis(scene, findings.atelectasis)
    if findings.effusion is not None:
        paint_effusion(scene, findings.effusion)
    if findings.pneumothorax is not None:
        paint_pneumothorax(scene, findings.pneumothorax)
    # Vessels vanish where the lung is airless (silhouette sign).
    scene.visible *= 1.0 - scene.fill


def lung_coordinates(scene: Scene, side: str) -> tuple[Array, Array]:
    """Per-pixel (height, lateral) within one lung: 0 at apex/medial border, 1 at base/chest wall."""
    g = scene.geometry
    x, y = scene.frame.grid()
    height = (y - g.apex_y) / g.lung_height(side)
    d = sign(side) * (x - g.midline)
    d_med = g.medial_d(side, y)
    d_lat = g.lateral_d(side, y)
    lateral = (d - d_med) / np.maximum(d_lat - d_med, 1e-3)
    return height.astype(np.float32), lateral.astype(np.float32)


def paint_effusion(scene: Scene, effusion: PleuralEffusion) -> None:
    """Fluid fills the lung base up to a meniscus that climbs the lateral chest wall."""
    g = scene.geometry
    x, y = scene.frame.grid()
    sides = SIDES if effusion.side == "bilateral" else (effusion.side,)
    for side in sides:
        height = EFFUSION_HEIGHT[effusion.severity]
        d = sign(side) * (x - g.midline)
        q = np.clip(d / g.thorax_half_width, 0.0, 1.0)
        # Meniscus: highest at the chest wall, falling medially.
        surface = g.costophrenic_y[side] - height + 0.07 * (1.0 - q**3)
        fluid = smoothstep(surface - 0.01, surface + 0.012, y) * (d > 0)
        # Denser with depth: the fluid layer thickens towards the base.
        fluid *= 0.8 + 0.2 * smoothstep(surface, surface + 0.08, y)
        lung = scene.masks[f"lung_{side}"]
        scene.add_fill(fluid * blur(lung, 0.8))
        scene.masks[f"effusion_{side}"] = (fluid > 0.4) & (lung > 0.5)


def paint_pneumothorax(scene: Scene, ptx: Pneumothorax) -> None:
    """Collapse the lung towards the hilum; the rim beyond is lucent, vessel-free, edged by a line."""
    g, frame = scene.geometry, scene.frame
    lung = scene.masks[f"lung_{ptx.side}"]
    factor = COLLAPSE_FACTOR[ptx.severity]
    collapsed = frame.polygon(g.collapsed_outline(ptx.side, factor))
    rim = lung * (1.0 - collapsed)
    soft_rim = blur(rim, 0.7)
    scene.air[...] = np.maximum(scene.air, PNEUMOTHORAX_LUCENCY * soft_rim)
    scene.fill *= 1.0 - soft_rim
    scene.visible *= 1.0 - blur(rim, 1.2)
    # The collapsed lung holds less air the more it has collapsed.
    scene.add_fill(0.9 * (1.0 - factor) * collapsed * lung)
    edge = blur(collapsed, 0.6)
    line = 4.0 * edge * (1.0 - edge) * (blur(rim, 2.0) > 0.05)
    scene.extra += 0.3 * line
    scene.masks["pneumothorax"] = rim > 0.5


def paint_airspace(scene: Scene, disease: AirspaceDisease, rng: np.random.Generator) -> None:
    """A lobar blob with an irregular margin (sharp at a fissure).

    Consolidation is dense with branching air bronchograms; an opacity is hazy and mottled.
    """
    frame, g = scene.frame, scene.geometry
    side = disease.side
    height, lateral = lung_coordinates(scene, side)
    (hc, qc), (rh, rq), fissure = LOBE_ZONES[disease.lobe]
    scale = np.sqrt(disease.extent)
    r2 = ((height - hc) / (rh * scale)) ** 2 + ((lateral - qc) / (rq * scale)) ** 2
    noise = smooth_noise(rng, frame.size, 0.025 / frame.pixel_size)
    blob = smoothstep(1.15, 0.7, r2 + 1.0 * (noise - 0.5))
    if fissure is not None:
        level, keep = fissure
        blob *= smoothstep(level + 0.01, level - 0.01, height) if keep == "above" else smoothstep(level - 0.01, level + 0.01, height)
    # Lobar disease spares the costophrenic angle, which stays sharp (unlike an effusion).
    blob *= smoothstep(0.97, 0.88, height)
    lung = scene.masks[f"lung_{side}"]
    blob *= lung
    if disease.kind == "consolidation":
        # Air bronchograms: the proximal airways, dark and branching, show through the dense lung.
        segments, depths = vessel_tree(g.hilum(side), side, rng, bend=0.0)
        bronchi = frame.stroke(segments[(depths >= 1) & (depths <= 3)], 0.006)
        core = smoothstep(0.3, 0.9, blob)
        fill = blur(blob, 1.0) * (0.9 - 0.35 * bronchi * core)
    else:
        mottle = smooth_noise(rng, frame.size, 0.012 / frame.pixel_size)
        fill = blur(blob, 1.5) * (0.55 + 0.3 * mottle)
    scene.add_fill(fill)
    scene.masks["airspace"] = blob > 0.5


def paint_lesion(scene: Scene, lesion: LungLesion, rng: np.random.Generator) -> None:
    """A round (nodule) or lobulated (mass) airless density with a soft margin."""
    frame, g = scene.frame, scene.geometry
    cx, cy = g.lung_point(lesion.side, lesion.height, lesion.lateral)
    radius = 0.5 * lesion.diameter_cm / FIELD_OF_VIEW_CM
    win = frame.window(cx - 2 * radius, cy - 2 * radius, cx + 2 * radius, cy + 2 * radius)
    if win is None:
        return
    sl, x, y = win
    theta = np.arctan2(y - cy, x - cx)
    wobble = 0.0
    if lesion.kind == "mass":
        p1, p2 = rng.uniform(0.0, 2 * np.pi, size=2)
        wobble = 0.08 * np.sin(3 * theta + p1) + 0.05 * np.sin(5 * theta + p2)
    r = np.hypot(x - cx, y - cy) / (radius * (1.0 + wobble))
    edge = frame.pixel_size / radius
    density = smoothstep(1.0 + edge, 1.0 - 2.0 * edge, r)
    scene.add_fill(density, sl)
    scene.extra[sl] += 0.06 * density
    mask = np.zeros((frame.size, frame.size), dtype=bool)
    mask[sl] = density > 0.5
    scene.masks["lesion"] = mask


def paint_atelectasis(scene: Scene, atel: Atelectasis) -> None:
    """Plate-like bands above the hemidiaphragm; with volume loss also a basal medial wedge."""
    frame, g = scene.frame, scene.geometry
    sides = SIDES if atel.side == "bilateral" else (atel.side,)
    bands = np.zeros((frame.size, frame.size), dtype=np.float32)
    for side in sides:
        s, tw = sign(side), g.thorax_half_width
        for above, d_from, d_to, tilt in ((0.045, 0.3, 0.78, 0.012), (0.095, 0.4, 0.82, -0.01)):
            d = np.linspace(d_from * tw, d_to * tw, 12)
            line_y = g.dome_y(side, d) - above + tilt * np.linspace(-1.0, 1.0, 12)
            line = np.stack([g.midline + s * d, line_y], axis=1)
            lo, hi = line.min(axis=0) - 0.02, line.max(axis=0) + 0.02
            win = frame.window(lo[0], lo[1], hi[0], hi[1])
            if win is None:
                continue
            sl, wx, wy = win
            dist = polyline_distance(wx, wy, line)
            half = 0.0065
            bands[sl] = np.maximum(bands[sl], smoothstep(half + frame.pixel_size, half - frame.pixel_size, dist))
        if atel.kind == "volume loss":
            # Collapsed lower lobe: a triangle against the heart border from hilum to diaphragm.
            top_y, base_y = g.hilum_y + 0.06, g.dome_top[side] - 0.01
            top_d, base_d = g.medial_d(side, top_y) - 0.02, g.medial_d(side, base_y) - 0.02
            tri = np.array(
                [
                    (g.midline + s * top_d, top_y),
                    (g.midline + s * (base_d + 0.12), base_y + 0.03),
                    (g.midline + s * base_d, base_y + 0.05),
                ]
            )
            wedge = blur(frame.polygon(tri), 1.0) * scene.masks[f"lung_{side}"]
            bands = np.maximum(bands, 0.7 * wedge)
    bands *= scene.masks["lung_right"] + scene.masks["lung_left"]
    scene.add_fill(0.9 * bands)
    scene.masks["atelectasis"] = bands > 0.4
