"""Draws that work the same with `random.Random` and `numpy.random.Generator`.

Task functions accept either generator so callers (the trainer's data stream, a notebook, the
generation code) can pass whatever they already hold; these three draws are all tasks need.
"""

from __future__ import annotations

import random

import numpy as np

Rng = random.Random | np.random.Generator


def draw_unit(rng: Rng) -> float:
    """Uniform float in [0, 1)."""
    return float(rng.random())


def draw_index(rng: Rng, n: int) -> int:
    """Uniform integer in [0, n)."""
    if n <= 0:
        raise ValueError(f"cannot draw an index from an empty range (n={n})")
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(n))
    return rng.randrange(n)


def draw_subset(rng: Rng, n: int, k: int) -> list[int]:
    """`min(k, n)` distinct indices from [0, n), in draw order."""
    k = min(k, n)
    if isinstance(rng, np.random.Generator):
        return [int(i) for i in rng.choice(n, size=k, replace=False)]
    return rng.sample(range(n), k)
