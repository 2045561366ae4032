"""Consistency checks on a `TokenizedStudy` that every image task runs before building prompts.

Checking here, with the study key in every message, lets a bad shard sample be named and
skipped; the prompt builders themselves only know about code arrays.
"""

from __future__ import annotations

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.tasks.tokens import image_block
from radllm.vocab_spec import VisualVocabSpec


def checked_views(study: TokenizedStudy, spec: VisualVocabSpec) -> list[str]:
    """The study's view names, after checking there is one per code array and every grid fits."""
    if len(study.views) != len(study.image_codes):
        raise RadllmError(f"study {study.key}: {len(study.image_codes)} code arrays but {len(study.views)} view names")
    for index, codes in enumerate(study.image_codes):
        image_block(codes, spec, f"study {study.key} view {index}")
    return list(study.views)
