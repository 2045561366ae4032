"""The image codes a prompt shows, for a batch of studies: from shards as stored, else VQ-encoded now.

Only the views the prompt uses (`radllm.tasks.select_input_views`, frontal first, at most
`max_views`) are decoded and encoded, all images of a batch in one VQ forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from radllm.errors import RadllmError
from radllm.generation.inputs import StudyInput
from radllm.imaging import load_image
from radllm.tasks import select_input_views
from radllm.vq.encode import encode_images
from radllm.vq.tokenizer import ImageTokenizer

log = logging.getLogger(__name__)


def prompt_codes(
    studies: Sequence[StudyInput], vq: ImageTokenizer | None, max_views: int, batch_size: int = 64
) -> tuple[list[list[np.ndarray] | None], list[str]]:
    """Codes of each study's prompt views, in view order.

    Returns:
        (codes per study, or None when one of its images is unreadable; error messages of those).

    Raises:
        RadllmError: images to encode but no VQ-GAN given.
    """
    chosen = [select_input_views(s.views, max_views) for s in studies]
    result: list[list[np.ndarray] | None] = [None] * len(studies)
    pixels: list[torch.Tensor] = []
    owners: list[int] = []
    errors: list[str] = []
    for index, (study, views) in enumerate(zip(studies, chosen)):
        if study.codes is not None:
            result[index] = [np.asarray(study.codes[v]) for v in views]
            continue
        if vq is None:
            raise RadllmError(f"study {study.study_id}: its images must be VQ-encoded; pass --vq VQ_DIR")
        try:
            images = [load_image(study.image_paths[v], vq.image_size) for v in views]  # [1, S, S] each
        except (RadllmError, OSError) as err:
            errors.append(f"study {study.study_id}: {err}")
            log.warning("skipping study %s: unreadable image (%s)", study.study_id, err)
            continue
        pixels.extend(images)
        owners.extend([index] * len(images))
    if pixels:
        encoded = [c.numpy() for c in encode_images(vq, pixels, batch_size)]  # [h, w] each
        for index, codes in zip(owners, encoded):
            result[index] = (result[index] or []) + [codes]
    return result, errors
