"""Support devices: endotracheal tube, central venous catheter, enteric tube (bright thin lines)."""

from __future__ import annotations

import numpy as np

from radllm.phantoms.geometry import ChestGeometry
from radllm.phantoms.raster import catmull_rom, polyline_distance, segments_of, smoothstep
from radllm.phantoms.scene import Scene
from radllm.phantoms.spec import FIELD_OF_VIEW_CM, SupportDevices

#: Outer half width of an endotracheal tube and its radiopaque stripe (normalised units).
ETT_HALF_WIDTH = 0.011
ETT_STRIPE_HALF_WIDTH = 0.003


def ett_tip(geometry: ChestGeometry, devices: SupportDevices) -> tuple[float, float]:
    """Image (x, y) of the endotracheal tube tip: `ett_above_carina_cm` above the carina."""
    cx, cy = geometry.carina
    return cx + 0.002, cy - devices.ett_above_carina_cm / FIELD_OF_VIEW_CM


def central_line_path(geometry: ChestGeometry, route: str) -> np.ndarray:
    """Centre line of a central venous catheter ending at the cavoatrial junction region."""
    cx, tw = geometry.midline, geometry.thorax_half_width
    tip = (cx - 0.035, geometry.hilum_y + 0.04)
    if route == "right internal jugular":
        pts = [(cx - 0.12, -0.02), (cx - 0.095, 0.1), (cx - 0.06, geometry.apex_y + 0.08), (cx - 0.045, geometry.carina_y), tip]
    else:
        y_clav = geometry.apex_y + 0.06
        pts = [(cx + tw + 0.1, y_clav - 0.02), (cx + 0.6 * tw, y_clav + 0.01), (cx + 0.2 * tw, y_clav + 0.05), (cx - 0.03, geometry.carina_y - 0.03), tip]
    return catmull_rom(np.array(pts), samples=16)


def enteric_tube_path(geometry: ChestGeometry) -> np.ndarray:
    """Down the oesophagus left of the trachea, through the hiatus, curving into the stomach."""
    cx, dome = geometry.midline, geometry.dome_top["left"]
    pts = [(cx + 0.03, -0.02), (cx + 0.026, geometry.carina_y + 0.05), (cx + 0.035, dome + 0.01), (cx + 0.1, dome + 0.09), (cx + 0.19, dome + 0.07)]
    return catmull_rom(np.array(pts), samples=16)


def paint_devices(scene: Scene, devices: SupportDevices) -> None:
    """Draw each device present; tubes and lines go into the `metal` layer."""
    frame, g = scene.frame, scene.geometry
    if devices.endotracheal_tube:
        tx, ty = ett_tip(g, devices)
        line = np.array([(g.midline + 0.004, -0.03), (tx, ty)])
        win = frame.window(tx - 0.03, -0.03, tx + 0.03, ty + 0.01)
        if win is not None:
            sl, x, y = win
            px = frame.pixel_size
            dist = polyline_distance(x, y, line)
            lumen = smoothstep(ETT_HALF_WIDTH + px, ETT_HALF_WIDTH - px, dist)
            # Plastic walls show as two thin lines; the radiopaque stripe runs along one wall.
            walls = smoothstep(1.5 * px, 0.5 * px, np.abs(dist - ETT_HALF_WIDTH + px))
            stripe_line = line + np.array([ETT_HALF_WIDTH * 0.5, 0.0])
            stripe = smoothstep(ETT_STRIPE_HALF_WIDTH + px, ETT_STRIPE_HALF_WIDTH - px, polyline_distance(x, y, stripe_line))
            scene.air[sl] = np.maximum(scene.air[sl], 0.5 * lumen)
            scene.metal[sl] = np.maximum(scene.metal[sl], np.maximum(0.5 * walls, stripe))
    segments, weights = [], []
    if devices.central_line is not None:
        segments.append(segments_of(central_line_path(g, devices.central_line)))
        weights.append(np.full(len(segments[-1]), 1.0))
    if devices.enteric_tube:
        segments.append(segments_of(enteric_tube_path(g)))
        weights.append(np.full(len(segments[-1]), 0.85))
    if segments:
        lines = frame.stroke(np.concatenate(segments), 0.007, np.concatenate(weights))
        scene.metal[...] = np.maximum(scene.metal, lines)
