"""A whole split of a shards directory, in index order, each study once: what evaluation reads.

Training streams shuffled, rank-split samples (`radllm.data.reader.ShardStream`); evaluation
(baselines, held-out perplexity) needs every study of a split exactly once and in a fixed order,
and must not quietly score a subset when shards are damaged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from radllm.data.reader import ShardStream
from radllm.data.shards import ShardIndex
from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.vocab_spec import VisualVocabSpec


def read_split(directory: str | os.PathLike, split: str, expected_spec: VisualVocabSpec | None = None) -> list[TokenizedStudy]:
    """Every study of `split`, unshuffled, in the order of `index.json` (see `iter_split`)."""
    return list(iter_split(directory, split, expected_spec))


def iter_split(
    directory: str | os.PathLike, split: str, expected_spec: VisualVocabSpec | None = None, index: ShardIndex | None = None
) -> Iterator[TokenizedStudy]:
    """`read_split` one study at a time, so a caller that needs the first few reads only those.

    Args:
        expected_spec: when given, the index's visual vocab spec must equal it.
        index: `directory`'s index, when the caller has read it already.

    Raises:
        RadllmError: missing index or split, a spec mismatch, or (once the split has been read
            through) any corrupt/missing sample: evaluating on part of a split would silently
            change the numbers.
    """
    stream = ShardStream(directory, split, shuffle=False, drop_remainder=False, expected_spec=expected_spec, index=index)
    seen: set[str] = set()
    for study in stream.iter_worker(epoch=0, worker=0, num_workers=1):
        if study.study_id not in seen:  # the reader re-reads past a lost sample to keep its quota
            seen.add(study.study_id)
            yield study
    stats = stream.stats()
    if stats["corrupt"] or stats["missing"]:
        raise RadllmError(
            f"{directory}: split {split!r} has {stats['corrupt']} corrupt and {stats['missing']} missing sample(s); "
            "re-run `radllm tokenize`"
        )
