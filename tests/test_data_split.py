"""`read_split`: a whole split in index order, each study once; damaged shards and foreign specs are errors."""

from __future__ import annotations

import dataclasses
import tarfile

import numpy as np
import pytest
from test_reader import SPEC, write_counts

from radllm.data.split import read_split
from radllm.errors import RadllmError


def test_reads_every_study_once_in_index_order(tmp_path) -> None:
    keys = write_counts(tmp_path, [3, 1, 4])
    studies = read_split(tmp_path, "train", SPEC)
    assert [s.key for s in studies] == keys
    assert all(isinstance(s.image_codes[0], np.ndarray) for s in studies)


def test_damaged_shard_and_other_spec_are_errors(tmp_path) -> None:
    keys = write_counts(tmp_path, [3, 3])
    with pytest.raises(RadllmError, match="codebook_size"):
        read_split(tmp_path, "train", dataclasses.replace(SPEC, codebook_size=32))
    with pytest.raises(RadllmError, match="split 'val'"):
        read_split(tmp_path, "val")
    shard = tmp_path / "train-000001.tar"
    with tarfile.open(shard) as tar:
        cut = tar.getmember(f"{keys[4]}.meta.json").offset_data + 5  # inside the shard's 2nd sample
    shard.write_bytes(shard.read_bytes()[:cut])
    with pytest.raises(RadllmError, match="missing sample"):
        read_split(tmp_path, "train")
