"""Turn scene layers into an 8-bit radiograph: attenuation, detector response, blur and noise.

Convention: more attenuation is brighter (air black, soft tissue grey, bone and metal white), as
on a displayed chest film.
"""

from __future__ import annotations

import numpy as np

from radllm.phantoms.raster import blur
from radllm.phantoms.scene import Scene
from radllm.phantoms.spec import Acquisition

Array = np.ndarray

#: Linear attenuation weights of each layer (soft tissue thickness = 1).
AIR_CONTRAST = 0.82
BONE_WEIGHT = 0.35
VESSEL_WEIGHT = 0.2
METAL_WEIGHT = 1.3
#: Attenuation mapped to full white before the display curve.
WHITE_LEVEL = 2.0


def attenuation(scene: Scene) -> Array:
    """Total attenuation per pixel: tissue minus displaced air, plus bone, vessels and metal."""
    lung_air = scene.air * (1.0 - scene.fill)
    return (
        scene.body * (1.0 - AIR_CONTRAST * lung_air)
        + scene.extra
        + BONE_WEIGHT * scene.bone * (0.35 + 0.65 * scene.body)
        + VESSEL_WEIGHT * scene.vessels * scene.visible
        + METAL_WEIGHT * scene.metal
    )


def expose(scene: Scene, acquisition: Acquisition, rng: np.random.Generator) -> Array:
    """Detector image as (size, size) uint8.

    Brightness follows 1 − exp(−k·A) (film-like saturation at high attenuation), normalised so
    `WHITE_LEVEL` maps to white; a gamma curve sets contrast; unsharpness and signal-dependent
    quantum noise are scaled with image size so 128 px and 256 px renderings look alike.
    """
    size = scene.frame.size
    a = attenuation(scene)
    k = acquisition.exposure
    signal = (1.0 - np.exp(-k * a)) / (1.0 - np.exp(-k * WHITE_LEVEL))
    signal = np.clip(signal, 0.0, 1.0) ** acquisition.gamma
    signal = blur(signal.astype(np.float32), acquisition.blur_px * size / 256.0)
    # Larger pixels collect more quanta: noise std falls with pixel side length.
    noise_sigma = acquisition.noise * size / 256.0
    signal = signal + noise_sigma * np.sqrt(signal + 0.02) * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.clip(np.rint(signal * 255.0), 0, 255).astype(np.uint8)
