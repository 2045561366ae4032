"""Seeded study-level train/val/test split for datasets without an official one (IU X-Ray).

The order comes from a hash of (seed, study id), not from a shuffled list, so a study's rank
does not depend on the platform, the Python version or the order the files were listed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from radllm.manifest import SPLITS

DEFAULT_RATIOS = (0.7, 0.1, 0.2)


def _rank_key(seed: int, study_id: str) -> tuple[bytes, str]:
    return hashlib.sha256(f"{seed}:{study_id}".encode()).digest(), study_id


def split_counts(n: int, ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> tuple[int, int, int]:
    """Split sizes for `n` studies by largest remainder, so they sum to `n` and sit within one
    study of `ratio * n` (50 studies at 7:1:2 give exactly 35/5/10)."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"split ratios must be three non-negative numbers with a positive sum, got {ratios}")
    total = sum(ratios)
    exact = [n * r / total for r in ratios]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def assign_splits(
    study_ids: Iterable[str], seed: int = 0, ratios: tuple[float, float, float] = DEFAULT_RATIOS
) -> dict[str, str]:
    """Map each study id to "train", "val" or "test" in proportions `ratios`, deterministic in `seed`.

    Raises ValueError on duplicate ids (a study split twice could land in train and test).
    """
    ids = list(study_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("assign_splits: duplicate study ids")
    ordered = sorted(ids, key=lambda s: _rank_key(seed, s))
    n_train, n_val, _ = split_counts(len(ordered), ratios)
    out: dict[str, str] = {}
    for rank, study_id in enumerate(ordered):
        out[study_id] = SPLITS[0] if rank < n_train else SPLITS[1] if rank < n_train + n_val else SPLITS[2]
    return out
