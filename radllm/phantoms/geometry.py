"""Outlines and landmarks of one chest, derived from a `StudySpec` (patient coordinates).

Everything here is deterministic in the spec: lung and heart outlines, diaphragm domes,
costophrenic angles, hila, carina and rib centre lines. The anatomy and finding painters both
draw from this one description, so, e.g., an effusion meniscus meets the same costophrenic angle
the normal anatomy drew, and the cardiothoracic ratio can be read off the outlines.

Distances from the midline are written `d` (>= 0); `sign(side)` turns them into image x
(the patient's right lung is on the image's left).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from radllm.phantoms.raster import catmull_rom
from radllm.phantoms.spec import Side, StudySpec

SIDES: tuple[Side, Side] = ("right", "left")

#: Number of posterior ribs drawn per side.
RIB_COUNT = 10
#: Half thickness of a posterior rib (normalised units).
RIB_HALF_WIDTH = 0.0105
#: Rise and fall of a posterior rib arc (normalised units): up near the spine, down laterally.
RIB_RISE, RIB_DROP = 0.022, 0.1


def sign(side: str) -> float:
    """-1 for the patient's right (image left), +1 for the patient's left."""
    return -1.0 if side == "right" else 1.0


@dataclass(frozen=True)
class Rib:
    """Centre line of one posterior rib arc: y(u) for u in [0, 1] from spine to chest wall.

    y(u) = y0 − RIB_RISE·sin(0.8πu) + RIB_DROP·u^2.5 at distance d(u) = d0 + u·(d1 − d0) from the
    midline; the lateral end continues as a fainter anterior rib running down and medially.
    """

    side: Side
    number: int
    y0: float
    d0: float
    d1: float

    def y_at(self, u: np.ndarray | float) -> np.ndarray | float:
        return self.y0 - RIB_RISE * np.sin(0.8 * np.pi * u) + RIB_DROP * np.power(u, 2.5)

    @property
    def lateral_end(self) -> tuple[float, float]:
        """(d, y) where the posterior arc meets the chest wall."""
        return self.d1, float(self.y_at(1.0))


class ChestGeometry:
    """Landmarks and outlines of one chest (see module docstring)."""

    def __init__(self, spec: StudySpec):
        self.spec = spec
        a = spec.anatomy
        self.midline = a.midline
        self.apex_y = a.apex_y
        self.hilum_y = a.hilum_y
        self.carina_y = a.carina_y
        self.mediastinum_half_width = a.mediastinum_half_width
        self.thorax_half_width = a.thorax_half_width
        atel = spec.findings.atelectasis
        raise_right = atel.dome_elevation if atel is not None and atel.side in ("right", "bilateral") else 0.0
        raise_left = atel.dome_elevation if atel is not None and atel.side in ("left", "bilateral") else 0.0
        self.dome_top = {"right": a.dome_right_y - raise_right, "left": a.dome_left_y - raise_left}
        self.costophrenic_y = {s: self.dome_top[s] + a.sulcus_depth for s in SIDES}

    # ----- lungs -------------------------------------------------------------------------------

    def _upper_curve(self, side: Side) -> np.ndarray:
        """(d, y) from the medial top over the apex down the lateral wall to the costophrenic angle."""
        tw, ya, mw = self.thorax_half_width, self.apex_y, self.mediastinum_half_width
        cp = self.costophrenic_y[side]
        span = cp - ya
        pts = [
            (mw * 0.7, ya + 0.07),
            (0.30 * tw, ya + 0.012),
            (0.42 * tw, ya),
            (0.56 * tw, ya + 0.02),
            (0.78 * tw, ya + 0.13 * span),
            (0.95 * tw, ya + 0.38 * span),
            (tw, ya + 0.72 * span),
            (0.985 * tw, cp),
        ]
        return catmull_rom(np.array(pts), samples=16)

    def _dome_curve(self, side: Side) -> np.ndarray:
        """(d, y) of the hemidiaphragm from the costophrenic angle to the cardiophrenic angle."""
        tw, mw = self.thorax_half_width, self.mediastinum_half_width
        top, cp = self.dome_top[side], self.costophrenic_y[side]
        pts = [
            (0.985 * tw, cp),
            (0.82 * tw, top + 0.35 * (cp - top)),
            (0.52 * tw, top),
            (0.25 * tw, top + 0.02),
            (mw * 0.7, top + 0.05),
        ]
        return catmull_rom(np.array(pts), samples=16)

    def lung_outline(self, side: Side) -> np.ndarray:
        """Closed outline (N, 2) of one lung in image (x, y), before the heart is cut out."""
        dy = np.concatenate([self._upper_curve(side), self._dome_curve(side)[1:]])
        return self._to_image(side, dy)

    def _to_image(self, side: Side, dy: np.ndarray) -> np.ndarray:
        out = dy.copy()
        out[:, 0] = self.midline + sign(side) * dy[:, 0]
        return out

    @cached_property
    def _lateral_profile(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for side in SIDES:
            curve = self._upper_curve(side)
            start = int(np.argmin(curve[:, 1]))  # the apex
            part = curve[start:]
            order = np.argsort(part[:, 1])
            out[side] = (part[order, 1], part[order, 0])
        return out

    def lateral_d(self, side: Side, y: np.ndarray | float) -> np.ndarray | float:
        """Distance of the inner chest wall (lung's lateral border) from the midline at height y."""
        ys, ds = self._lateral_profile[side]
        return np.interp(y, ys, ds)

    def dome_y(self, side: Side, d: np.ndarray | float) -> np.ndarray | float:
        """Height of the hemidiaphragm at distance d from the midline."""
        curve = self._dome_curve(side)
        order = np.argsort(curve[:, 0])
        return np.interp(d, curve[order, 0], curve[order, 1])

    @cached_property
    def thorax_width(self) -> float:
        """Maximal inner thoracic width: from the right lung's lateral edge to the left's."""
        return float(sum(self._upper_curve(s)[:, 0].max() for s in SIDES))

    def collapsed_outline(self, side: Side, factor: float) -> np.ndarray:
        """Lung outline shrunk towards the hilum and base, as in a pneumothorax.

        Points move towards an anchor at the hilum's x and just above the diaphragm: laterally by
        `factor`, and vertically by `factor` only above the anchor (air rises, the base stays).
        """
        outline = self.lung_outline(side)
        ax, ay = self.hilum(side)[0], self.dome_top[side] - 0.04
        out = outline.copy()
        out[:, 0] = ax + (outline[:, 0] - ax) * factor
        above = outline[:, 1] < ay
        out[above, 1] = ay + (outline[above, 1] - ay) * factor
        return out

    # ----- heart, mediastinum, airway ----------------------------------------------------------

    def hilum(self, side: Side) -> tuple[float, float]:
        """Image (x, y) of the hilum; the left sits slightly higher than the right."""
        d = self.mediastinum_half_width + 0.04
        y = self.hilum_y + (0.012 if side == "right" else -0.012)
        return self.midline + sign(side) * d, y

    @cached_property
    def heart_outline(self) -> np.ndarray:
        """Closed heart outline (N, 2) whose widths right/left of the midline give the spec's CTR."""
        a = self.spec.anatomy
        width = self.spec.ctr * self.thorax_width
        r, l = a.heart_right_fraction * width, (1.0 - a.heart_right_fraction) * width
        mw, hy = self.mediastinum_half_width, self.hilum_y
        dr, dl = self.dome_top["right"], self.dome_top["left"]
        yr, yl = dr - 0.05, dl - 0.05
        pts = np.array(
            [
                (-mw * 0.95, hy + 0.02),
                (-(0.55 * mw + 0.45 * r), 0.45 * (hy + 0.02) + 0.55 * yr),
                (-r, yr),
                (-0.93 * r, dr + 0.01),
                (-0.4 * r, dr + 0.07),
                (0.5 * l, dl + 0.07),
                (0.95 * l, dl + 0.015),
                (l, yl),
                (0.9 * l, yl - 0.35 * (yl - hy)),
                (0.6 * l, yl - 0.7 * (yl - hy)),
                (mw + 0.025, hy + 0.03),
                (mw * 0.95, hy - 0.01),
            ]
        )
        curve = catmull_rom(pts, samples=20, closed=True)
        # The spline may overshoot its control points a little: rescale each side so the
        # extreme right and left borders sit exactly at r and l.
        neg, pos = curve[:, 0] < 0, curve[:, 0] > 0
        curve[neg, 0] *= r / -curve[neg, 0].min()
        curve[pos, 0] *= l / curve[pos, 0].max()
        curve[:, 0] += self.midline
        return curve

    @cached_property
    def heart_width(self) -> float:
        return float(np.ptp(self.heart_outline[:, 0]))

    @property
    def ctr(self) -> float:
        """Cardiothoracic ratio read off the outlines (maximal cardiac / maximal thoracic width)."""
        return self.heart_width / self.thorax_width

    @cached_property
    def mediastinum_outline(self) -> np.ndarray:
        """Closed outline of the upper mediastinum (above the heart), aortic knob on the left."""
        mw, cx, hy = self.mediastinum_half_width, self.midline, self.hilum_y
        knob_y = hy - 0.09
        pts = np.array(
            [
                (cx - 0.9 * mw, -0.02),
                (cx - mw, hy - 0.05),
                (cx - mw * 0.95, hy + 0.06),
                (cx + mw * 0.95, hy + 0.06),
                (cx + mw + 0.005, knob_y + 0.05),
                (cx + mw + 0.028, knob_y),
                (cx + mw + 0.01, knob_y - 0.04),
                (cx + 0.9 * mw, 0.08),
                (cx + 0.9 * mw, -0.02),
            ]
        )
        return catmull_rom(pts, samples=10, closed=True)

    @property
    def carina(self) -> tuple[float, float]:
        return self.midline, self.carina_y

    def airway(self) -> list[np.ndarray]:
        """Centre lines of the trachea and both main bronchi (image coordinates)."""
        cx, cy = self.carina
        trachea = np.array([(cx, -0.02), (cx, cy)])
        bronchi = []
        for side in SIDES:
            hx, hy = self.hilum(side)
            bronchi.append(np.array([(cx, cy), (0.5 * (cx + hx), 0.5 * (cy + hy) + 0.01), (hx, hy + 0.02)]))
        return [trachea, *bronchi]

    # ----- bones -------------------------------------------------------------------------------

    @cached_property
    def ribs(self) -> list[Rib]:
        """Posterior ribs 1..RIB_COUNT on both sides, evenly spaced from the apex to the bases."""
        base = 0.5 * (self.costophrenic_y["right"] + self.costophrenic_y["left"])
        first = self.apex_y - 0.012
        spacing = (base - 0.02 - first) / (RIB_COUNT - 1.0)
        ribs = []
        for side in SIDES:
            for k in range(RIB_COUNT):
                y0 = first + k * spacing
                y_end = y0 - RIB_RISE * np.sin(0.8 * np.pi) + RIB_DROP
                d1 = float(self.lateral_d(side, y_end)) + 0.6 * RIB_HALF_WIDTH
                ribs.append(Rib(side=side, number=k + 1, y0=float(y0), d0=0.04, d1=d1))
        return ribs

    def clavicle(self, side: Side) -> np.ndarray:
        """Centre line (N, 2) of a clavicle from the sternal end out to the shoulder."""
        s, cx = sign(side), self.midline
        y_sternal = self.apex_y + 0.035
        d_lat = self.thorax_half_width + 0.07
        u = np.linspace(0.0, 1.0, 12)
        d = 0.035 + u * (d_lat - 0.035)
        y = y_sternal - 0.055 * u + 0.012 * np.sin(2.0 * np.pi * u)
        return np.stack([cx + s * d, y], axis=1)

    # ----- zones for findings ------------------------------------------------------------------

    def lung_height(self, side: Side) -> float:
        return self.costophrenic_y[side] - self.apex_y

    @cached_property
    def _medial_profile(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        heart = self.heart_outline
        levels = np.linspace(self.apex_y, max(self.costophrenic_y.values()), 64)
        near = np.abs(heart[None, :, 1] - levels[:, None]) < 0.01
        out = {}
        for side in SIDES:
            d = sign(side) * (heart[:, 0] - self.midline)
            widest = np.where(near, d[None, :], -np.inf).max(axis=1)
            out[side] = (levels, np.maximum(widest, self.mediastinum_half_width) + 0.02)
        return out

    def medial_d(self, side: Side, y: np.ndarray | float) -> np.ndarray | float:
        """Distance from the midline of the lung's medial border at height y (just beyond the
        mediastinum or, lower down, the heart), so findings placed lateral to it stay visible."""
        levels, d = self._medial_profile[side]
        return np.interp(y, levels, d)

    def lung_point(self, side: Side, height: float, lateral: float) -> tuple[float, float]:
        """Image (x, y) at fractional `height` (0 apex, 1 costophrenic angle) and `lateral`
        (0 medial border, 1 chest wall) inside one lung."""
        y = self.apex_y + height * self.lung_height(side)
        d_lat = float(self.lateral_d(side, y))
        d_med = float(self.medial_d(side, y))
        return self.midline + sign(side) * (d_med + lateral * (d_lat - d_med)), y
