"""The shuffled-image control: every study is shown the images of another study of the same input.

    radllm generate reports ... --shuffle-images 0 --out shuffled.jsonl

Scored against each study's *own* reference, these predictions are what a model that does not
read the image would get: its reports and answers follow only the prompt's text and the data's
priors. A model that reads the image must beat them (README "Is my model reading the image?").

The images move by a seeded derangement (a permutation without fixed points) over the studies
that have images, drawn once over the whole input before ranks split it: study i shows the
images of study `source[i]` ≠ i, whatever the world size, batch size or resume point. Records
carry `"image_from"` (the study whose images the prompt held) and `"shuffle_images"` (the seed),
so a resumed run refuses an output written with another seed or without shuffling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from radllm.errors import RadllmError
from radllm.generation.inputs import StudyInput
from radllm.generation.plan import BatchResult, Unit


def derangement(n: int, seed: int) -> np.ndarray:
    """A permutation of range(n) with no fixed point, uniform over all such permutations, a pure function of (n, seed).

    Rejection sampling: a uniform permutation is a derangement with probability ≈ 1/e, so a
    handful of draws suffice; every accepted permutation is equally likely.

    Raises:
        RadllmError: n < 2 (one study cannot be shown another study's images).
    """
    if n < 2:
        raise RadllmError(f"--shuffle-images needs at least 2 studies with images, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, n]))
    while True:
        order = rng.permutation(n)
        if not (order == np.arange(n)).any():
            return order


def shuffle_images(studies: Sequence[StudyInput], seed: int) -> list[StudyInput]:
    """`studies` in the same order, each with its own id and report but another study's views and images.

    Studies without images (text-only inputs) are left as they are and take no part.
    """
    with_images = [i for i, s in enumerate(studies) if s.has_images]
    out = list(studies)
    for target, source in zip(with_images, derangement(len(with_images), seed)):
        donor = studies[with_images[source]]
        out[target] = dataclasses.replace(
            studies[target], views=list(donor.views), image_paths=donor.image_paths, codes=donor.codes, image_from=donor.study_id
        )
    return out


def tag_records(process: Callable[[Sequence[Unit]], BatchResult], seed: int) -> Callable[[Sequence[Unit]], BatchResult]:
    """`process` whose records also say which study's images the prompt showed, and the shuffle seed."""

    def tagged(batch: Sequence[Unit]) -> BatchResult:
        result = process(batch)
        source = {unit.study.study_id: unit.study.image_from for unit in batch}
        for record in result.records:
            record["image_from"] = source[record["study_id"]]
            record["shuffle_images"] = seed
        return result

    return tagged
