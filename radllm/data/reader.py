"""Streaming reader of tokenized shards: the trainer's data source.

How one epoch is laid out (all of it a pure function of index.json, seed, epoch, rank, world size,
worker and number of workers, so every process computes the same plan without talking):

1. The split's shards are shuffled with a generator seeded by (seed, epoch); every rank uses the
   same order. Concatenated, they number the epoch's N samples by *position* 0..N-1, using the
   counts in index.json.
2. Every rank gets the same quota `q = N // world_size` (`drop_remainder=True`: the last N mod
   world_size positions of the epoch's order are not read; with shard shuffling they are different
   samples each epoch) or `q = ceil(N / world_size)` (`drop_remainder=False`: the last rank's
   range wraps around to the start, so up to world_size - 1 samples are read twice). Rank r reads
   positions [r*q, (r+1)*q): ranks are disjoint, and together they cover the split.
3. The rank's range is cut into one contiguous sub-range per DataLoader worker (sizes differ by at
   most one). A worker opens only the shards its sub-range overlaps and skips, without decoding,
   the samples of a boundary shard that belong to a neighbour.
4. Members are decoded with safe decoders only (`radllm.data.sample.decode_study`). Corrupt
   samples, refused members and broken shards are skipped, counted and logged. Every sample lost
   that way is made up by reading on past the end of the worker's range (wrapping around the
   epoch's order), so the worker still delivers exactly its quota and every rank yields the same
   number of samples and batches. Those extra samples duplicate a neighbour's; that is the price
   of equal counts and it only happens when data is damaged.
5. A shuffle buffer, seeded by (seed, epoch, rank, worker), mixes samples within the worker.

Position tracking for checkpoints lives in `ShardLoader`, in the main process: every batch carries
the id of the worker that produced it, so the loader counts samples delivered per worker no matter
how the DataLoader interleaves them. To resume, each worker replays its (deterministic) stream for
that epoch and drops the samples already delivered: the cost is reading and decoding those
samples again (tar I/O, npy/json decoding; no VQ or tokenizer work), about the loader's own
throughput (see `benchmarks/loader.py`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from radllm.data.sample import CorruptSample, TokenizedStudy, UnsafeMember, decode_study
from radllm.data.shards import RawSample, ShardIndex, ShardInfo, ShardReadError, iter_raw_samples, load_index
from radllm.errors import RadllmError
from radllm.preemption import ignore_job_signals
from radllm.vocab_spec import VisualVocabSpec, check_compatible

log = logging.getLogger(__name__)


@dataclass
class ReaderStats:
    """Counters of one reader (summed over workers by `ShardLoader.stats`)."""

    samples: int = 0  # yielded by the stream (in a DataLoader worker: including prefetched batches)
    corrupt: int = 0  # skipped: bad npy/json/text, missing or duplicated member, refused member
    refused: int = 0  # of `corrupt`: had a member outside the schema (never decoded)
    truncated_shards: int = 0  # shard reads that broke off or ended before index.json's count
    missing: int = 0  # positions a broken shard did not deliver
    filled: int = 0  # samples read past a worker's range to make up for lost ones
    resume_skipped: int = 0  # samples replayed and dropped to restore a saved position

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: dict[str, int]) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + int(other.get(f.name, 0)))


@dataclass(frozen=True)
class Segment:
    """Sample positions [start, stop) inside one shard."""

    shard: str
    start: int
    stop: int


@dataclass(frozen=True)
class WorkerPlan:
    """What one (rank, worker) reads in one epoch."""

    order: tuple[ShardInfo, ...]  # the epoch's shard order (same on every rank)
    start: int  # first epoch position of the worker's range
    quota: int  # samples the worker delivers; its range is [start, start + quota)


def epoch_order(shards: Sequence[ShardInfo], seed: int, epoch: int, shuffle: bool) -> tuple[ShardInfo, ...]:
    """The epoch's shard order: a permutation seeded by (seed, epoch) only, so all ranks agree."""
    if not shuffle:
        return tuple(shards)
    permutation = np.random.default_rng([seed, epoch]).permutation(len(shards))
    return tuple(shards[i] for i in permutation)


def rank_quota(total: int, world_size: int, drop_remainder: bool) -> int:
    """Samples per rank per epoch: floor (drop the remainder) or ceil (repeat a few samples)."""
    return total // world_size if drop_remainder else math.ceil(total / world_size)


def split_quota(quota: int, parts: int) -> list[int]:
    """`quota` cut into `parts` sizes that differ by at most one, larger ones first."""
    return [quota // parts + (1 if i < quota % parts else 0) for i in range(parts)]


def segments(order: Sequence[ShardInfo], start: int, stop: int) -> Iterator[Segment]:
    """Shard segments covering epoch positions [start, stop), wrapping around after the last shard."""
    total = sum(shard.num_samples for shard in order)
    if total == 0:
        return
    ends = np.cumsum([shard.num_samples for shard in order])
    position = start
    while position < stop:
        wrapped = position % total
        i = int(np.searchsorted(ends, wrapped, side="right"))
        shard_start = int(ends[i]) - order[i].num_samples
        take = min(int(ends[i]) - wrapped, stop - position)
        yield Segment(order[i].name, wrapped - shard_start, wrapped - shard_start + take)
        position += take


def shuffle_buffer(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Yield `items` in a locally shuffled order using a buffer of `size` (<= 1: unchanged)."""
    if size <= 1:
        yield from items
        return
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = int(rng.integers(size))
        yield buffer[i]
        buffer[i] = item
    for i in rng.permutation(len(buffer)):
        yield buffer[i]


def decode_raw(raw: RawSample) -> TokenizedStudy:
    """Decode a grouped sample; duplicated members make it corrupt (which copy would be right?)."""
    if raw.duplicates:
        raise CorruptSample(f"sample {raw.key!r}: member(s) {sorted(set(raw.duplicates))} appear more than once")
    return decode_study(raw.key, raw.members)


class ShardStream(IterableDataset):
    """Samples of one split for one rank, as `TokenizedStudy` objects (see the module docstring).

    Iterating it (directly, or inside any DataLoader worker) yields epoch `self.epoch`'s samples
    for this rank and the current worker. For batches with checkpointable positions use
    `ShardLoader`.

    Args:
        directory: shards directory with `index.json`.
        split: "train", "val" or "test".
        rank, world_size: this process's data-parallel rank and the number of ranks.
        seed: base seed of shard order and shuffle buffers.
        shuffle: shuffle shards per epoch and samples in a buffer (off for evaluation).
        shuffle_buffer: samples held by each worker's shuffle buffer.
        drop_remainder: see the module docstring (equal counts by dropping vs. repeating).
        expected_spec: if given, the index's visual vocab spec must equal it (codes made by
            another VQ-GAN or for another tokenizer are refused, not silently misread).
        index: `directory`'s index when the caller has read it already (`load_index`), so one
            run reads index.json once.

    Raises:
        RadllmError: missing/malformed index, unknown split, a spec mismatch, or fewer samples
            than ranks.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        drop_remainder: bool = True,
        expected_spec: VisualVocabSpec | None = None,
        index: ShardIndex | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.directory = Path(directory)
        self.index = index if index is not None else load_index(self.directory)
        if expected_spec is not None:
            check_compatible(expected_spec, self.index.visual_vocab, "the model/tokenizer", str(self.directory / "index.json"))
        self.split = split
        self.shards = tuple(self.index.shards(split))
        self.num_samples = sum(shard.num_samples for shard in self.shards)
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = shuffle_buffer
        self.drop_remainder = drop_remainder
        self.samples_per_rank = rank_quota(self.num_samples, world_size, drop_remainder)
        if self.samples_per_rank == 0:
            raise RadllmError(f"{self.directory}: split {split!r} has {self.num_samples} samples, fewer than the {world_size} ranks reading it")
        self.epoch = 0
        self._stats = ReaderStats()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def worker_quotas(self, num_workers: int) -> list[int]:
        """Samples each DataLoader worker of this rank delivers per epoch (identical on every rank)."""
        return split_quota(self.samples_per_rank, max(1, num_workers))

    def plan(self, epoch: int, worker: int, num_workers: int) -> WorkerPlan:
        quotas = self.worker_quotas(num_workers)
        start = self.rank * self.samples_per_rank + sum(quotas[:worker])
        return WorkerPlan(epoch_order(self.shards, self.seed, epoch, self.shuffle), start, quotas[worker])

    def stats(self) -> dict[str, int]:
        """Counters of this process's copy (a DataLoader worker's counts stay in the worker)."""
        return self._stats.as_dict()

    def __iter__(self) -> Iterator[TokenizedStudy]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.iter_worker(self.epoch, worker, num_workers)

    def iter_worker(self, epoch: int, worker: int, num_workers: int, skip: int = 0) -> Iterator[TokenizedStudy]:
        """Exactly `worker_quotas(num_workers)[worker]` samples of `epoch`, the first `skip` dropped."""
        plan = self.plan(epoch, worker, num_workers)
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        samples = self._quota_samples(plan)
        for i, study in enumerate(shuffle_buffer(samples, self.shuffle_buffer if self.shuffle else 0, rng)):
            if i < skip:
                self._stats.resume_skipped += 1
                continue
            self._stats.samples += 1
            yield study

    def _quota_samples(self, plan: WorkerPlan) -> Iterator[TokenizedStudy]:
        """The worker's range, then (only if samples were lost) positions past it until the quota is met."""
        count = 0
        for segment in segments(plan.order, plan.start, plan.start + plan.quota):
            for study in self._read_segment(segment):
                count += 1
                yield study
        position = plan.start + plan.quota
        while count < plan.quota:
            found = False
            for segment in segments(plan.order, position, position + self.num_samples):
                for study in self._read_segment(segment):
                    found = True
                    count += 1
                    self._stats.filled += 1
                    yield study
                    if count == plan.quota:
                        return
            if not found:
                raise RadllmError(f"{self.directory}: no readable sample in split {self.split!r}; see the logged errors")
            position += self.num_samples

    def _read_segment(self, segment: Segment) -> Iterator[TokenizedStudy]:
        """Decoded samples at positions [start, stop) of one shard; earlier samples are passed undecoded."""
        path = self.directory / segment.shard
        position = 0
        try:
            with open(path, "rb") as stream:
                for raw in iter_raw_samples(stream, str(path)):
                    if position >= segment.start:
                        study = self._decode(raw, path)
                        if study is not None:
                            yield study
                    position += 1
                    if position == segment.stop:
                        return
        except (ShardReadError, OSError) as err:
            self._lost(segment, position, f"{err}")
            return
        if position < segment.stop:
            self._lost(segment, position, f"{path}: ended after {position} samples, index.json lists more")

    def _lost(self, segment: Segment, position: int, reason: str) -> None:
        missing = segment.stop - max(position, segment.start)
        self._stats.truncated_shards += 1
        self._stats.missing += missing
        log.warning("skipping %d sample(s) of a broken shard: %s", missing, reason)

    def _decode(self, raw: RawSample, path: Path) -> TokenizedStudy | None:
        try:
            return decode_raw(raw)
        except UnsafeMember as err:
            self._stats.refused += 1
            self._stats.corrupt += 1
            log.warning("%s: refused sample: %s", path, err)
        except CorruptSample as err:
            self._stats.corrupt += 1
            log.warning("%s: corrupt sample skipped: %s", path, err)
        return None


@dataclass
class _WorkerOutput:
    """What a worker sends: a batch (None in its final message), its size, its id and its counters."""

    worker: int
    size: int
    batch: Any
    stats: dict[str, int]


def _as_list(samples: list[TokenizedStudy]) -> list[TokenizedStudy]:
    return samples


def _passthrough(item: _WorkerOutput) -> _WorkerOutput:
    return item


class _WorkerBatches(IterableDataset):
    """Runs inside each DataLoader worker: batches that worker's samples and tags them with its id."""

    def __init__(self, stream: ShardStream, epoch: int, consumed: list[int], batch_size: int, drop_last: bool, collate_fn: Callable) -> None:
        super().__init__()
        self.stream = stream
        self.epoch = epoch
        self.consumed = consumed
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate_fn = collate_fn

    def __iter__(self) -> Iterator[_WorkerOutput]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        batch: list[TokenizedStudy] = []
        for study in self.stream.iter_worker(self.epoch, worker, num_workers, skip=self.consumed[worker]):
            batch.append(study)
            if len(batch) == self.batch_size:
                yield _WorkerOutput(worker, len(batch), self.collate_fn(batch), self.stream.stats())
                batch = []
        if batch and not self.drop_last:
            yield _WorkerOutput(worker, len(batch), self.collate_fn(batch), self.stream.stats())
        yield _WorkerOutput(worker, 0, None, self.stream.stats())


class ShardLoader:
    """Batches of a `ShardStream` through a torch DataLoader, with a checkpointable position.

    Each worker batches its own samples (`collate_fn(list[TokenizedStudy])`, default: the list),
    so every rank yields `batches_per_epoch` batches. Iterating runs the current epoch from the
    current position; a complete pass advances to the next epoch, while breaking out early keeps
    the position, so the next iteration (or a loader restored from `state_dict()`) continues with
    exactly the samples not yet delivered. Positions only depend on epoch and per-worker counts,
    which are the same on every rank, so any rank's state restores all of them.
    """

    def __init__(
        self,
        stream: ShardStream,
        batch_size: int,
        *,
        num_workers: int = 0,
        collate_fn: Callable[[list[TokenizedStudy]], Any] = _as_list,
        drop_last: bool = False,
        prefetch_factor: int = 2,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.stream = stream
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.prefetch_factor = prefetch_factor
        self.epoch = 0
        self._consumed = [0] * max(1, num_workers)
        self._done = ReaderStats()  # counters of finished iterations
        self._live: dict[int, dict[str, int]] = {}  # latest counters of each worker of the current iteration

    def batches_per_epoch(self) -> int:
        """Batches every rank yields per epoch."""
        rounding = math.floor if self.drop_last else math.ceil
        return sum(rounding(q / self.batch_size) for q in self.stream.worker_quotas(self.num_workers))

    def __iter__(self) -> Iterator[Any]:
        self._fold_stats()
        dataset = _WorkerBatches(self.stream, self.epoch, list(self._consumed), self.batch_size, self.drop_last, self.collate_fn)
        extra = {"prefetch_factor": self.prefetch_factor} if self.num_workers > 0 else {}
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers, collate_fn=_passthrough,
                            worker_init_fn=ignore_job_signals, **extra)  # workers outlive the job's signal until their rank has saved
        for output in loader:
            self._live[output.worker] = output.stats
            if output.batch is None:
                continue
            self._consumed[output.worker] += output.size  # counted before the consumer sees it
            yield output.batch
        self._fold_stats()
        self.epoch += 1
        self._consumed = [0] * len(self._consumed)

    def _fold_stats(self) -> None:
        for counters in self._live.values():
            self._done.add(counters)
        self._live = {}

    def stats(self) -> dict[str, int]:
        """Reader counters summed over workers and iterations (as of the latest batch received)."""
        total = ReaderStats(**self._done.as_dict())
        for counters in self._live.values():
            total.add(counters)
        return total.as_dict()

    def state_dict(self) -> dict[str, Any]:
        """Position to store in a checkpoint: epoch and samples delivered per worker."""
        return {
            "epoch": self.epoch,
            "consumed": list(self._consumed),
            "split": self.stream.split,
            "num_samples": self.stream.num_samples,
            "world_size": self.stream.world_size,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "seed": self.stream.seed,
            "shuffle": self.stream.shuffle,
            "shuffle_buffer": self.stream.shuffle_buffer,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; the settings that define the sample order must be unchanged.

        Raises:
            RadllmError: naming each setting that differs (e.g. a resumed run with another world
                size or number of workers would read a different split of the data).
        """
        current = self.state_dict()
        diffs = [f"{key}: {state.get(key)!r} saved, {current[key]!r} now" for key in current if key not in ("epoch", "consumed") and state.get(key) != current[key]]
        if diffs:
            raise RadllmError("cannot restore the data position; the reader is configured differently:\n  " + "\n  ".join(diffs))
        consumed = [int(c) for c in state["consumed"]]
        quotas = self.stream.worker_quotas(self.num_workers)
        if len(consumed) != len(quotas) or any(not 0 <= c <= q for c, q in zip(consumed, quotas)):
            raise RadllmError(f"data position {consumed} does not fit the per-worker quotas {quotas}")
        self.epoch = int(state["epoch"])
        self._consumed = consumed
