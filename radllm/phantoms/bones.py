"""Bones: thoracic spine, posterior and anterior ribs (with fractures), clavicles and humeri.

Tubular bones are drawn as filled bands (fast polygon fills) with a brighter cortical rim: the
outer band minus a fraction of a narrower inner band.
"""

from __future__ import annotations

import numpy as np

from radllm.phantoms.geometry import RIB_HALF_WIDTH, SIDES, Rib, sign
from radllm.phantoms.raster import band_outline, blur, smoothstep
from radllm.phantoms.scene import Scene
from radllm.phantoms.spec import RibFracture

Array = np.ndarray

#: Half width of the cortical gap at a fracture and the step-off of a displaced fragment.
FRACTURE_GAP = 0.013
FRACTURE_STEP = 2.0 * RIB_HALF_WIDTH
#: Anterior ribs run down and medially from the chest wall towards the costal cartilage.
ANTERIOR_DROP = 0.10
ANTERIOR_END = 0.42
#: Inner (medullary) band width relative to the bone, and how much paler the medulla is.
MEDULLA_WIDTH = 0.55
MEDULLA_DIM = 0.4


def paint_bones(scene: Scene, fracture: RibFracture | None) -> None:
    """Draw the skeleton; `fracture` breaks the named ribs.

    Ribs and the shoulder girdle are filled as sharp polygons and anti-aliased by one shared blur.
    """
    paint_spine(scene)
    sharp = ribs(scene, fracture) + shoulders(scene)
    scene.bone += blur(sharp, 0.6)


def paint_spine(scene: Scene) -> None:
    """Vertebral bodies with disc spaces, pedicle rings and spinous processes along the midline."""
    g, frame = scene.geometry, scene.frame
    cx = g.midline
    win = frame.window(cx - 0.06, -0.05, cx + 0.06, 1.05)
    if win is None:
        return
    sl, x, y = win
    px = frame.pixel_size
    ribs = [r for r in g.ribs if r.side == "right"]
    period = ribs[1].y0 - ribs[0].y0
    ref = ribs[0].y0 - 0.3 * period
    phase = (y - ref) / period
    to_disc = np.abs(phase - np.round(phase))
    dx = np.abs(x - cx)
    half = 0.034
    body = smoothstep(half + px, half - px, dx) * (1.0 - 0.6 * smoothstep(0.1, 0.03, to_disc))
    cortex = 0.25 * np.exp(-(((dx - half + 0.003) / 0.004) ** 2)) * body
    centre = ref + (np.floor(phase) + 0.5) * period
    ry = 0.28 * period
    ring_r = np.sqrt(((dx - 0.021) / 0.008) ** 2 + ((y - centre) / ry) ** 2)
    pedicles = 0.35 * np.exp(-(((ring_r - 1.0) / 0.35) ** 2))
    spinous = 0.25 * smoothstep(1.0, 0.6, (dx / 0.006) ** 2 + ((y - centre - 0.15 * period) / ry) ** 2)
    scene.bone[sl] += 0.3 * body + 0.8 * (cortex + pedicles + spinous)


def tubular(scene: Scene, bones: list[tuple[Array, float]]) -> Array:
    """Unblurred cortical-bone map of bands given as (centre line, half width)."""
    frame = scene.frame
    outer = frame.polygons([band_outline(line, hw) for line, hw in bones])
    inner = frame.polygons([band_outline(line, MEDULLA_WIDTH * hw) for line, hw in bones])
    return outer - MEDULLA_DIM * inner


def rib_pieces(rib: Rib, midline: float, fracture: RibFracture | None) -> list[Array]:
    """Centre line(s) of a posterior rib arc in image coordinates: two pieces if fractured.

    A fracture leaves a gap of 2·FRACTURE_GAP across the arc at `fracture.position`; a displaced
    lateral fragment is stepped down by FRACTURE_STEP and angulated.
    """
    span = rib.d1 - rib.d0
    s = sign(rib.side)

    def arc(u: Array, drop: Array | float = 0.0) -> Array:
        return np.stack([midline + s * (rib.d0 + u * span), rib.y_at(u) + drop], axis=1)

    if fracture is None or fracture.side != rib.side or rib.number not in fracture.ribs:
        return [arc(np.linspace(0.0, 1.0, 20))]
    gap = FRACTURE_GAP / span
    medial = np.linspace(0.0, fracture.position - gap, 14)
    lateral = np.linspace(fracture.position + gap, 1.0, 8)
    drop = 0.0
    if fracture.displaced:
        drop = FRACTURE_STEP + 0.25 * (lateral - fracture.position) * span
    return [arc(medial), arc(lateral, drop)]


def anterior_rib(rib: Rib, midline: float) -> Array:
    """Centre line of the anterior rib: from the lateral end down and medially."""
    d_end, y_end = rib.lateral_end
    v = np.linspace(1.0, ANTERIOR_END, 6)
    y = y_end + ANTERIOR_DROP * (1.0 - v) / (1.0 - ANTERIOR_END)
    return np.stack([midline + sign(rib.side) * v * d_end, y], axis=1)


def ribs(scene: Scene, fracture: RibFracture | None) -> Array:
    """Posterior ribs with cortical margins (broken where fractured) and faint anterior ribs."""
    g, frame = scene.geometry, scene.frame
    posterior = [(piece, RIB_HALF_WIDTH) for rib in g.ribs for piece in rib_pieces(rib, g.midline, fracture)]
    anterior = frame.polygons([band_outline(anterior_rib(rib, g.midline), 0.85 * RIB_HALF_WIDTH) for rib in g.ribs])
    return 0.9 * tubular(scene, posterior) + 0.3 * anterior


def shoulders(scene: Scene) -> Array:
    """Both clavicles and the humeri (head and proximal shaft) at the upper corners."""
    g, frame = scene.geometry, scene.frame
    bones = [(g.clavicle(side), 0.0135) for side in SIDES]
    theta = np.linspace(0.0, 2.0 * np.pi, 40, endpoint=False)
    circle = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    heads_outer, heads_inner = [], []
    for side in SIDES:
        hx = g.midline + sign(side) * (g.thorax_half_width + 0.13)
        hy = g.apex_y + 0.04
        bones.append((np.array([(hx, hy), (hx + sign(side) * 0.02, hy + 0.4)]), 0.028))
        heads_outer.append(np.array([hx, hy]) + 0.055 * circle)
        heads_inner.append(np.array([hx, hy]) + 0.055 * 0.8 * circle)
    heads = frame.polygons(heads_outer) - MEDULLA_DIM * frame.polygons(heads_inner)
    return 0.9 * np.maximum(tubular(scene, bones), heads)
