"""The layered canvas that painters draw into before exposure turns it into a radiograph.

Each layer is a (size, size) float32 map in image space. Keeping tissue classes apart until the
end lets findings act physically: an effusion *replaces lung air* with fluid, a pneumothorax adds
air and *removes vascular markings*, a nodule adds density only where it sits in aerated lung.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radllm.phantoms.geometry import ChestGeometry
from radllm.phantoms.raster import Frame

Array = np.ndarray


@dataclass
class Scene:
    """Layers (all (size, size) float32, image space) and the masks findings need.

    body:      soft-tissue thickness through the patient (0 outside the body, ~1 centrally).
    air:       fraction of that thickness that is air (lungs, trachea, gastric bubble).
    fill:      fraction of lung air displaced by fluid or tissue (effusion, consolidation,
               nodules, atelectasis); 0 = normally aerated, 1 = airless.
    extra:     added soft-tissue density (heart, mediastinum, pleural line, tube walls).
    bone:      bone density (ribs, spine, clavicles, humeri).
    vessels:   vascular markings before visibility is applied.
    visible:   where vascular markings show (aerated lung; 0 in a pneumothorax).
    metal:     radiopaque devices.
    masks:     named binary masks (lung_right, lung_left, heart, pneumothorax, ...).
    """

    frame: Frame
    geometry: ChestGeometry
    body: Array
    air: Array
    fill: Array
    extra: Array
    bone: Array
    vessels: Array
    visible: Array
    metal: Array
    masks: dict[str, Array] = field(default_factory=dict)

    @classmethod
    def empty(cls, frame: Frame, geometry: ChestGeometry) -> "Scene":
        def zeros() -> Array:
            return np.zeros((frame.size, frame.size), dtype=np.float32)

        return cls(frame, geometry, zeros(), zeros(), zeros(), zeros(), zeros(), zeros(), zeros(), zeros())

    def add_fill(self, amount: Array, where: tuple[slice, slice] | None = None) -> None:
        """Displace lung air: fill = 1 − (1 − fill)(1 − amount), so overlaps never exceed 1."""
        target = self.fill if where is None else self.fill[where]
        target[...] = 1.0 - (1.0 - target) * (1.0 - np.clip(amount, 0.0, 1.0))
