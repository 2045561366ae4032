"""Render a `StudySpec` to an 8-bit PA radiograph, with the masks of what was drawn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radllm.errors import RadllmError
from radllm.phantoms.anatomy import paint_anatomy
from radllm.phantoms.bones import paint_bones
from radllm.phantoms.support_devices import paint_devices
from radllm.phantoms.exposure import expose
from radllm.phantoms.findings import paint_findings
from radllm.phantoms.geometry import ChestGeometry
from radllm.phantoms.raster import Frame
from radllm.phantoms.scene import Scene
from radllm.phantoms.spec import StudySpec

#: Smallest image side that still resolves ribs and tubes.
MIN_SIZE = 64


@dataclass
class Rendering:
    """A rendered study.

    image: (size, size) uint8, air dark, bone bright.
    masks: boolean (size, size) masks in image space: `lung_right`, `lung_left`, `heart`,
           `mediastinum`, and per finding `effusion_<side>`, `pneumothorax`, `airspace`,
           `lesion`, `atelectasis` when present. Lung masks exclude heart and mediastinum.
    ctr:   cardiothoracic ratio of the drawn outlines.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    ctr: float


def render_study(spec: StudySpec, size: int, rng: np.random.Generator) -> Rendering:
    """Draw one study at `size` x `size` pixels.

    Geometry comes entirely from `spec`; `rng` only supplies texture (vessel branching, opacity
    mottling, air bronchograms, detector noise), so the same spec and rng state give the same
    pixels.

    Raises:
        RadllmError: if `size` is below `MIN_SIZE`.
    """
    if size < MIN_SIZE:
        raise RadllmError(f"phantom image size {size} is too small; expected at least {MIN_SIZE} pixels")
    acq = spec.acquisition
    frame = Frame(size, rotation_deg=acq.rotation_deg, scale=acq.scale, shift=(acq.shift_x, acq.shift_y))
    geometry = ChestGeometry(spec)
    scene = Scene.empty(frame, geometry)
    paint_anatomy(scene, rng)
    paint_findings(scene, spec.findings, rng)
    paint_bones(scene, spec.findings.fracture)
    paint_devices(scene, spec.findings.devices)
    image = expose(scene, acq, rng)
    masks = {name: np.asarray(m > 0.5) if m.dtype != bool else m for name, m in scene.masks.items()}
    return Rendering(image=image, masks=masks, ctr=geometry.ctr)
