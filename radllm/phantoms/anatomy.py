"""Soft tissue, lungs, heart, mediastinum, airway and vascular markings of a normal chest."""

from __future__ import annotations

import numpy as np

from radllm.phantoms.geometry import SIDES, sign
from radllm.phantoms.raster import blur, segments_of, smoothstep
from radllm.phantoms.scene import Scene

Array = np.ndarray

#: Vessel tree: generations of branching, marking weight per generation, and the widths of the
#: central (generations 0-2) and peripheral (3+) classes.
VESSEL_DEPTH = 6
VESSEL_WEIGHTS = (1.0, 0.9, 0.75, 0.6, 0.45, 0.33, 0.22)
VESSEL_WIDTHS = (0.012, 0.006)


def paint_anatomy(scene: Scene, rng: np.random.Generator) -> None:
    """Draw the normal chest into `scene` and record lung/heart masks in `scene.masks`.

    Also sets `scene.visible` to the (soft-edged) lungs: markings show only over aerated lung.
    """
    paint_body(scene)
    paint_lungs(scene)
    paint_airway(scene)
    paint_vessels(scene, rng)


def paint_body(scene: Scene) -> None:
    """Soft-tissue thickness: neck, sloping shoulders, chest wall and upper arms.

    The torso has an elliptical cross-section (thinner towards the chest wall, so the wall is
    greyer than the mediastinum); the shoulders slope down from the neck like a trapezius.
    """
    g, a, frame = scene.geometry, scene.geometry.spec.anatomy, scene.frame
    x, y = frame.grid()
    tw, ya, cx = g.thorax_half_width, g.apex_y, g.midline
    wall = tw + a.soft_tissue
    half_width = np.interp(y, [ya - 0.02, ya + 0.12, 0.45, 1.1], [tw + 0.16, wall + 0.02, wall, wall + 0.025])
    q = np.abs(x - cx) / half_width
    body = np.sqrt(np.clip(1.0 - q * q * np.sqrt(q), 0.0, 1.0))  # (1 - q^2.5)^0.5
    # Above the apices: the neck (|d| < 0.085) runs off the top; lateral to it the shoulders
    # slope down like a trapezius.
    top = frame.window(-0.5, -0.5, 1.5, ya + 0.06)
    if top is not None:
        sl, tx, ty = top
        d = np.abs(tx - cx)
        shoulder = ya - 0.15 + 0.14 * np.clip((d - 0.08) / 0.42, 0.0, 1.0) ** 0.6
        lateral = d > 0.085
        body[sl] *= np.where(lateral, smoothstep(shoulder - 0.01, shoulder + 0.03, ty), 1.0)
        neck = np.sqrt(np.clip(1.0 - (d / 0.09) ** 2, 0.0, 1.0))
        body[sl] = np.maximum(body[sl], 0.8 * neck)
    # Upper arms hang beside the chest wall; mostly cut off by the field's edge.
    for side in SIDES:
        arm_x = cx + sign(side) * (tw + 0.2)
        win = frame.window(arm_x - 0.08, -0.5, arm_x + 0.08, 1.5)
        if win is None:
            continue
        sl, ax, ay = win
        arm = np.sqrt(np.clip(1.0 - ((ax - arm_x) / 0.075) ** 2, 0.0, 1.0)) * smoothstep(ya - 0.04, ya + 0.04, ay)
        body[sl] = np.maximum(body[sl], 0.85 * arm)
    scene.body[...] = body


def paint_lungs(scene: Scene) -> None:
    """Aerated lungs with the heart and mediastinum cut out; heart density; gastric bubble."""
    g, frame = scene.geometry, scene.frame
    heart = frame.polygon(g.heart_outline)
    mediastinum = frame.polygon(g.mediastinum_outline)
    central = np.maximum(heart, mediastinum)
    lungs = np.zeros_like(heart)
    for side in SIDES:
        lung = frame.polygon(g.lung_outline(side)) * (1.0 - central)
        scene.masks[f"lung_{side}"] = lung
        lungs += lung
    # Air thickness grows away from the pleural surfaces, so lung edges are soft.
    depth = np.clip(1.6 * blur(lungs, 0.02 / frame.pixel_size), 0.0, 1.0)
    soft = blur(lungs, 0.7)
    scene.air[...] = soft * (0.55 + 0.45 * depth)
    scene.visible[...] = soft
    scene.masks["heart"] = heart
    scene.masks["mediastinum"] = mediastinum
    scene.extra[...] += blur(0.12 * heart + 0.18 * mediastinum * (1.0 - heart), 0.9)
    if g.spec.anatomy.gastric_bubble:
        bx = g.midline + 0.5 * g.thorax_half_width
        by = g.dome_top["left"] + 0.045
        win = frame.window(bx - 0.06, by - 0.03, bx + 0.06, by + 0.03)
        if win is not None:
            sl, x, y = win
            r = ((x - bx) / 0.055) ** 2 + ((y - by) / 0.028) ** 2
            scene.air[sl] = np.maximum(scene.air[sl], 0.45 * smoothstep(1.0, 0.7, r) * (y > by - 0.012))


def paint_airway(scene: Scene) -> None:
    """Trachea and main bronchi as air columns over the mediastinum."""
    trachea, *bronchi = scene.geometry.airway()
    segments = segments_of(trachea, *bronchi)
    weights = np.where(np.arange(len(segments)) < len(trachea) - 1, 1.0, 0.75)
    column = scene.frame.stroke(segments, 0.028, weights)
    scene.air[...] = np.maximum(scene.air, 0.7 * column)


def vessel_tree(
    origin: tuple[float, float], side: str, rng: np.random.Generator, bend: float = 0.15
) -> tuple[Array, Array]:
    """Branching pulmonary vessels (or bronchi) from a hilum: segments (K, 2, 2) in image coords
    and the generation (K,) of each.

    Five trunks fan out laterally; each branch bends sideways by up to `bend` of its length
    (drawn as two segments; bronchi use 0, they are straight) and splits in two at ±(12–40)°
    with 0.65–0.85 of its parent's length, so markings taper towards the periphery. Grown one
    generation at a time for all branches at once.
    """
    s = sign(side)
    base = np.radians(np.array([-70.0, -35.0, 0.0, 35.0, 75.0]) + rng.uniform(-10.0, 10.0, size=5))
    # Mirror for the right lung: directions point towards the patient's right (image left).
    direction = np.stack([s * np.cos(base), np.sin(base)], axis=1)
    length = np.array([0.065, 0.06, 0.06, 0.07, 0.07])
    start = np.tile(np.asarray(origin, dtype=np.float64), (5, 1))
    segments, depths = [], []
    for depth in range(VESSEL_DEPTH + 1):
        end = start + length[:, None] * direction
        normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
        mid = 0.5 * (start + end) + (rng.uniform(-bend, bend, size=len(start)) * length)[:, None] * normal
        segments += [np.stack([start, mid], axis=1), np.stack([mid, end], axis=1)]
        depths.append(np.full(2 * len(start), depth))
        if depth == VESSEL_DEPTH:
            break
        turn = np.radians(rng.uniform(12.0, 40.0, size=(len(start), 2))) * np.array([-1.0, 1.0])
        ca, sa = np.cos(turn), np.sin(turn)
        dx, dy = direction[:, :1], direction[:, 1:]
        direction = np.stack([dx * ca - dy * sa, dx * sa + dy * ca], axis=2).reshape(-1, 2)
        length = (length[:, None] * rng.uniform(0.65, 0.85, size=(len(length), 2))).reshape(-1)
        start = np.repeat(end, 2, axis=0)
    return np.concatenate(segments), np.concatenate(depths)


def paint_vessels(scene: Scene, rng: np.random.Generator) -> None:
    """Vascular markings branching from both hila, visible only inside aerated lung.

    Two calibre classes (central, peripheral) with weights falling by generation: markings are
    dense at the hila and faint in the outer third of the lungs.
    """
    trees = [vessel_tree(scene.geometry.hilum(side), side, rng) for side in SIDES]
    segments = np.concatenate([t[0] for t in trees])
    depths = np.concatenate([t[1] for t in trees])
    weights = np.asarray(VESSEL_WEIGHTS)[depths]
    calibre = (depths >= 3).astype(int)
    frame = scene.frame
    markings = np.zeros((frame.size, frame.size), dtype=np.float32)
    for k, width in enumerate(VESSEL_WIDTHS):
        pick = calibre == k
        markings = np.maximum(markings, frame.stroke(segments[pick], width, weights[pick]))
    scene.vessels[...] = markings
