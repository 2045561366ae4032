"""Streaming shard reader: rank/worker splits, equal counts, resume, corruption handling, ordering.

Shards are written by the test from random `TokenizedStudy` objects (no VQ-GAN needed); corrupt
shards are crafted with webdataset's own `TarWriter` or by cutting files, independently of the
writer under test.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import pickle
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from radllm.data.reader import ShardLoader, ShardStream, segments, split_quota
from radllm.data.sample import TokenizedStudy, encode_study
from radllm.data.shards import ShardInfo, ShardIndex, save_index, shard_name, write_split_shards
from radllm.errors import RadllmError
from radllm.vocab_spec import VisualVocabSpec, sha256_file

SPEC = VisualVocabSpec(
    codebook_size=16, grid_height=4, grid_width=4, image_size=16, token_offset=100,
    boi_id=98, eoi_id=99, text_vocab_size=98, vocab_size=128,
)


def make_study(n: int, rng: np.random.Generator) -> TokenizedStudy:
    views = ["PA", "LATERAL"][: 1 + n % 2]
    return TokenizedStudy(
        key=f"s{n:04d}",
        study_id=f"s{n:04d}",
        split="train",
        image_codes=[rng.integers(0, 16, (4, 4)).astype(np.int16) for _ in views],
        views=views,
        report=f"report {n}",
        report_ids=rng.integers(0, 98, 5).astype(np.int32),
    )


def write_counts(directory: Path, counts: list[int], seed: int = 0) -> list[str]:
    """Shards of 'train' with the given sample counts; returns all keys in shard order."""
    rng = np.random.default_rng(seed)
    shards, n = [], 0
    for count in counts:
        shards.append([make_study(n + i, rng) for i in range(count)])
        n += count
    write_split_shards(directory, {"train": shards}, SPEC)
    return [s.key for shard in shards for s in shard]


def read_epoch(stream: ShardStream, batch_size: int = 3, num_workers: int = 0) -> list[list[str]]:
    return [[s.key for s in batch] for batch in ShardLoader(stream, batch_size, num_workers=num_workers)]


def flat(batches: list[list[str]]) -> list[str]:
    return [key for batch in batches for key in batch]


def _read_rank(directory: str, rank: int, out: str) -> None:
    """Body of one rank process: 2 DataLoader workers, batches of 4, one epoch."""
    loader = ShardLoader(ShardStream(directory, "train", rank=rank, world_size=2, seed=5, shuffle_buffer=4), 4, num_workers=2)
    batches = [[s.key for s in batch] for batch in loader]
    Path(out).write_text(json.dumps({"batches": batches, "expected": loader.batches_per_epoch(), "stats": loader.stats()}))


@pytest.mark.slow
def test_two_rank_processes_with_two_workers_split_the_split_exactly(tmp_path):
    keys = write_counts(tmp_path, [7, 5, 3, 5, 4])  # 24 samples, shard sizes that do not divide evenly
    ctx = multiprocessing.get_context("fork")  # separate processes; fork avoids re-importing torch
    procs = [ctx.Process(target=_read_rank, args=(str(tmp_path), r, str(tmp_path / f"rank{r}.json"))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    per_rank = [flat(r["batches"]) for r in results]
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(keys)
    # 12 samples per rank, 6 per worker, batches of 4 -> 2 per worker; every rank the same.
    assert [len(r["batches"]) for r in results] == [4, 4] == [r["expected"] for r in results]
    assert all(r["stats"]["samples"] == 12 and r["stats"]["corrupt"] == 0 for r in results)


def test_uneven_total_drops_or_repeats_so_every_rank_is_equal(tmp_path):
    keys = write_counts(tmp_path, [6, 2, 9, 4])  # 21 samples over 2 ranks
    dropped = [flat(read_epoch(ShardStream(tmp_path, "train", rank=r, world_size=2, seed=1))) for r in range(2)]
    assert [len(d) for d in dropped] == [10, 10]
    assert set(dropped[0]).isdisjoint(dropped[1]) and len(set(keys) - set(dropped[0] + dropped[1])) == 1
    repeated = [flat(read_epoch(ShardStream(tmp_path, "train", rank=r, world_size=2, seed=1, drop_remainder=False))) for r in range(2)]
    assert [len(r) for r in repeated] == [11, 11]
    counts = Counter(repeated[0] + repeated[1])
    assert set(counts) == set(keys) and sorted(counts.values()) == [1] * 20 + [2]


def test_epoch_plan_against_a_naive_position_list():
    """segments() over shuffled shards equals slicing the explicit list of (shard, position) pairs."""
    shards = [ShardInfo(f"x{i}", c, "") for i, c in enumerate([3, 0, 5, 2])]
    naive = [(s.name, p) for s in shards for p in range(s.num_samples)]
    for start, stop in [(0, 10), (2, 7), (9, 14), (4, 25)]:
        got = [(seg.shard, p) for seg in segments(shards, start, stop) for p in range(seg.start, seg.stop)]
        assert got == [naive[i % 10] for i in range(start, stop)]
    assert split_quota(11, 3) == [4, 4, 3]


def test_same_seed_and_epoch_same_order_other_epoch_or_seed_different(tmp_path):
    write_counts(tmp_path, [5, 5, 5, 5])
    order = lambda seed, epoch: [s.key for s in ShardStream(tmp_path, "train", seed=seed, shuffle_buffer=6).iter_worker(epoch, 0, 1)]
    assert order(3, 0) == order(3, 0)
    assert order(3, 1) == order(3, 1)
    assert order(3, 0) != order(3, 1)
    assert order(3, 0) != order(4, 0)
    assert sorted(order(3, 0)) == sorted(order(3, 1))
    unshuffled = [s.key for s in ShardStream(tmp_path, "train", shuffle=False).iter_worker(0, 0, 1)]
    assert unshuffled == sorted(unshuffled)


@pytest.mark.parametrize("stop_after", [2, 3])
def test_restored_loader_yields_exactly_the_remaining_samples(tmp_path, stop_after):
    write_counts(tmp_path, [6, 7, 5])
    make = lambda: ShardLoader(ShardStream(tmp_path, "train", seed=9, shuffle_buffer=5), 3, num_workers=2)
    reference = make()
    full = [[s.key for s in b] for b in reference]
    next_epoch = [[s.key for s in b] for b in reference]
    assert full != next_epoch

    first = make()
    head = []
    for batch in first:
        head.append([s.key for s in batch])
        if len(head) == stop_after:
            break
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
    resumed = make()
    resumed.load_state_dict(state)
    rest = [[s.key for s in b] for b in resumed]
    assert sorted(flat(head + rest)) == sorted(flat(full))
    assert set(flat(rest)) == set(flat(full)) - set(flat(head))
    if stop_after % 2 == 0:  # both workers at the same count: round-robin resumes in step
        assert head + rest == full
    assert resumed.stats()["resume_skipped"] == sum(len(b) for b in head)
    # After the restored epoch, the next epoch is the same as an uninterrupted run's.
    assert [[s.key for s in b] for b in resumed] == next_epoch


def test_load_state_dict_refuses_a_different_layout(tmp_path):
    write_counts(tmp_path, [4, 4])
    saved = ShardLoader(ShardStream(tmp_path, "train"), 2, num_workers=2).state_dict()
    with pytest.raises(RadllmError, match="num_workers: 2 saved, 1 now"):
        ShardLoader(ShardStream(tmp_path, "train"), 2, num_workers=1).load_state_dict(saved)


def test_truncated_shard_is_skipped_counted_and_made_up(tmp_path, caplog):
    keys = write_counts(tmp_path, [4, 6, 4])
    broken = tmp_path / shard_name("train", 1)
    with tarfile.open(broken) as tar:
        cut = tar.getmember(f"{keys[6]}.meta.json").offset_data + 5  # inside the shard's 3rd sample
    broken.write_bytes(broken.read_bytes()[:cut])
    stream = ShardStream(tmp_path, "train", shuffle=False)
    with caplog.at_level(logging.WARNING):
        got = [s.key for s in stream.iter_worker(0, 0, 1)]
    stats = stream.stats()
    assert stats["truncated_shards"] == 1 and stats["missing"] == 4 and stats["filled"] == 4
    # Range: shard 0, the 2 complete samples of shard 1, shard 2; then wrap around for 4 more.
    assert got == keys[:6] + keys[10:] + keys[:4]
    assert "skipping 4 sample(s) of a broken shard" in caplog.text


def _raw_shard(path: Path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path), encoder=False) as writer:
        for sample in samples:
            writer.write(sample)


class _Explodes:
    """Unpickling this would create a marker file: proves a refused member is never unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_corrupt_and_unsafe_members_are_skipped_and_counted(tmp_path, caplog):
    rng = np.random.default_rng(0)
    clean = [make_study(i, rng) for i in range(10)]
    good = [make_study(20 + i, rng) for i in range(4)]
    bad = [make_study(30 + i, rng) for i in range(5)]
    members = [{"__key__": s.key, **encode_study(s)} for s in bad]
    members[0]["codes_0.npy"] = b"\x93NUMPY garbage"
    members[1]["labels.json"] = b"{not json"
    del members[2]["report.txt"]
    marker = tmp_path / "unpickled"
    members[3]["x.pickle"] = pickle.dumps(_Explodes(str(marker)))
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    members[4]["report_ids.npy"] = buffer.getvalue()
    as_member = lambda s: {"__key__": s.key, **encode_study(s)}
    _raw_shard(tmp_path / shard_name("train", 0), [as_member(s) for s in clean])
    _raw_shard(tmp_path / shard_name("train", 1), [as_member(s) for s in good[:2]] + members + [as_member(s) for s in good[2:]])
    shards = [ShardInfo(shard_name("train", i), n, sha256_file(tmp_path / shard_name("train", i))) for i, n in enumerate([10, 9])]
    save_index(ShardIndex({"train": shards}, SPEC, {}, 10, 0), tmp_path)

    stream = ShardStream(tmp_path, "train", shuffle=False)
    with caplog.at_level(logging.WARNING):
        got = list(stream.iter_worker(0, 0, 1))
    stats = stream.stats()
    assert stats["corrupt"] == 5 and stats["refused"] == 1 and stats["filled"] == 5
    assert not marker.exists()
    # The quota (19) is made up by reading on, wrapping to the start of the epoch: clean[:5] twice.
    assert [s.key for s in got] == [s.key for s in clean + good + clean[:5]]
    assert "x.pickle" in caplog.text and "allow_pickle" in caplog.text and "missing member(s) ['report.txt']" in caplog.text
    for study, decoded in zip(clean + good, got):
        assert all(np.array_equal(a, b) for a, b in zip(decoded.image_codes, study.image_codes))
        assert (decoded.report, decoded.views, decoded.labels) == (study.report, study.views, study.labels)
        assert np.array_equal(decoded.report_ids, study.report_ids)


def test_index_errors_are_clear(tmp_path):
    write_counts(tmp_path, [3])
    with pytest.raises(RadllmError, match="no split 'val'"):
        ShardStream(tmp_path, "val")
    with pytest.raises(RadllmError, match="fewer than the 4 ranks"):
        ShardStream(tmp_path, "train", rank=0, world_size=4)
    other = VisualVocabSpec(**{**SPEC.to_json(), "vq_hash": "abc"})
    with pytest.raises(RadllmError, match="vq_hash"):
        ShardStream(tmp_path, "train", expected_spec=other)
    (tmp_path / shard_name("train", 0)).unlink()
    with pytest.raises(RadllmError, match="missing"):
        ShardStream(tmp_path, "train")
