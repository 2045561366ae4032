"""Streams of packed micro-batches: shards → studies → task examples → packed rows → tensors.

The training split is read as `data.streams` data-parallel streams. Each stream reads its own part
of the shards (`ShardLoader`), turns every loader batch of studies into task examples
(`TaskMixer`, seeded per study and epoch) and packs that batch's examples into rows
(`pack_carrying`: the least-filled row is held back and its examples open the next batch's
rows, so rows are full but for the held ones). Rows wait in a queue until a micro-batch is
full. The queue and the held examples are part of the checkpoint, together with the reader
position, so a resumed run continues with exactly the rows an uninterrupted one would have seen
(rows hold a few thousand ints; cheap to store).

Streams, not ranks, define the data: rank r of W trains on streams r, r+W, ... (`RankBatches`),
`grad_accum` micro-batches of each per optimizer step. With as many streams as ranks (the
default) that is one stream per rank; a run resumed on fewer ranks keeps its streams and gives
each rank several, so every step still trains on the same rows in the same global batch.

Streams pack different numbers of rows per study batch, so they reach epoch ends at different
steps; each simply continues into the next epoch (the step count, not the epoch, ends a run).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from radllm.data.reader import ShardLoader, ShardStream
from radllm.data.sample import TokenizedStudy
from radllm.data.shards import ShardIndex
from radllm.errors import RadllmError
from radllm.packing import PackedRow, PackingStats, collate_packed, pack_carrying, pack_examples
from radllm.tasks import TASK_NAMES, TaskExample, TaskMixConfig, TaskMixer, task_spec
from radllm.training.config import DataOptions
from radllm.vocab_spec import VisualVocabSpec

NO_GROUP = -1  # loss group of padding positions
#: The image tokens of image-reading prompts made targets by `tasks.prompt_image_weight`: logged
#: apart, so `task_loss/report_generation` stays the NLL of report text.
PROMPT_IMAGES = "prompt_images"
#: What the trainer logs a loss for (`task_loss` in metrics.jsonl): the tasks, then prompt images.
LOSS_GROUPS: tuple[str, ...] = (*TASK_NAMES, PROMPT_IMAGES)


def loss_groups(rows: list[PackedRow], spec: VisualVocabSpec) -> torch.Tensor:
    """int64 [B, L]: index into `LOSS_GROUPS` of each token: its sample's task, except targets that
    are image tokens (codes, ``<eoi>``) of an image-reading task, which are `PROMPT_IMAGES`;
    NO_GROUP on padding."""
    out = torch.full((len(rows), rows[0].seq_len), NO_GROUP, dtype=torch.long)
    labels = torch.tensor([row.labels for row in rows])  # IGNORE_INDEX (< 0) is never an image id
    image_target = ((labels >= spec.token_offset) & (labels < spec.token_offset + spec.codebook_size)) | (labels == spec.eoi_id)
    prompt_images = LOSS_GROUPS.index(PROMPT_IMAGES)
    for i, row in enumerate(rows):
        position = 0
        for length, task in zip(row.seq_lens, row.tasks):
            span = out[i, position : position + length]  # a view: writes land in `out`
            span.fill_(TASK_NAMES.index(task))
            if task_spec(task).reads_images:
                span[image_target[i, position : position + length]] = prompt_images
            position += length
    return out


def collate_rows(rows: list[PackedRow], spec: VisualVocabSpec) -> dict[str, torch.Tensor]:
    """`collate_packed` plus per-token `loss_groups`."""
    batch = collate_packed(rows)
    batch["loss_groups"] = loss_groups(rows, spec)
    return batch


class PackedBatches:
    """Endless micro-batches of `micro_batch_size` packed rows of stream `stream` of `streams`, with a checkpointable position.

    `data` and `tasks` are the run config's sections; `seed` seeds the shard shuffle and the task draws.
    """

    def __init__(
        self,
        data: DataOptions,
        tasks: TaskMixConfig,
        tokenizer: PreTrainedTokenizerBase,
        spec: VisualVocabSpec,
        *,
        seed: int,
        micro_batch_size: int,
        stream: int,
        streams: int,
        index: ShardIndex | None = None,
    ) -> None:
        self.data = data
        self.micro_batch_size = micro_batch_size
        self.spec = spec
        self.pad_id = tokenizer.pad_token_id
        reader = ShardStream(
            data.shards, data.split, rank=stream, world_size=streams, seed=seed,
            shuffle=True, shuffle_buffer=data.shuffle_buffer, expected_spec=spec, index=index,
        )
        self.loader = ShardLoader(reader, data.studies_per_batch, num_workers=data.num_workers)
        self.mixer = TaskMixer(tokenizer, spec, tasks, seed)
        self.packing = PackingStats()
        self.pending: deque[PackedRow] = deque()
        self.held: list[TaskExample] = []  # the least-filled row of the last loader batch, packed first into the next
        self._studies: Iterator[list[TokenizedStudy]] | None = None

    def _next_studies(self) -> tuple[list[TokenizedStudy], int]:
        """The next loader batch and the epoch it belongs to (rolling over into new epochs)."""
        for _ in range(2):
            if self._studies is None:
                self._studies = iter(self.loader)
            epoch = self.loader.epoch
            try:
                return next(self._studies), epoch
            except StopIteration:
                self._studies = None
        raise RuntimeError("the shard loader yielded an empty epoch")  # ShardStream guarantees >= 1 sample per rank

    def next_rows(self) -> list[PackedRow]:
        """The next `micro_batch_size` rows."""
        while len(self.pending) < self.micro_batch_size:
            studies, epoch = self._next_studies()
            examples = self.mixer.examples(studies, epoch)
            rows, self.held = pack_carrying(examples, self.data.seq_len, self.pad_id, self.held, self.data.overflow, self.packing)
            self.pending.extend(rows)
        return [self.pending.popleft() for _ in range(self.micro_batch_size)]

    def next_batch(self) -> dict[str, torch.Tensor]:
        return collate_rows(self.next_rows(), self.spec)

    def state_dict(self) -> dict[str, Any]:
        """Reader position, the rows packed but not yet trained on, the examples held back for the
        next row, and counters (JSON-serialisable)."""
        return {
            "reader": self.loader.state_dict(),
            "pending": [asdict(row) for row in self.pending],
            "held": [asdict(example) for example in self.held],
            "task_counts": dict(self.mixer.counts),
            "packing": asdict(self.packing),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state["reader"])
        self._studies = None
        self.pending = deque(PackedRow(**row) for row in state["pending"])
        self.held = [TaskExample(**example) for example in state.get("held", [])]  # absent before carrying (older checkpoints)
        self.mixer.counts.clear()
        self.mixer.counts.update(state["task_counts"])
        self.packing = PackingStats(**state["packing"])


def owned_streams(rank: int, world_size: int, streams: int) -> list[int]:
    """The streams rank `rank` of `world_size` trains on: rank, rank + world_size, ...

    Raises:
        RadllmError: `streams` is not a multiple of `world_size` (ranks would get unequal shares).
    """
    if streams % world_size:
        raise RadllmError(
            f"data.streams = {streams} is not a multiple of the {world_size} ranks of this run; every rank needs an equal "
            f"share of the streams (use {world_size} or a multiple, or resume on a number of ranks that divides {streams})"
        )
    return list(range(rank, streams, world_size))


class RankBatches:
    """One rank's share of the streams (`owned_streams`) and its micro-batches of a step (`PackedBatches` of each)."""

    def __init__(
        self,
        data: DataOptions,
        tasks: TaskMixConfig,
        tokenizer: PreTrainedTokenizerBase,
        spec: VisualVocabSpec,
        *,
        seed: int,
        micro_batch_size: int,
        grad_accum: int,
        rank: int,
        world_size: int,
        streams: int,
        index: ShardIndex | None = None,
    ) -> None:
        self.grad_accum = grad_accum
        self.streams = {
            s: PackedBatches(data, tasks, tokenizer, spec, seed=seed, micro_batch_size=micro_batch_size, stream=s, streams=streams, index=index)
            for s in owned_streams(rank, world_size, streams)
        }

    @property
    def micro_batches_per_step(self) -> int:
        return self.grad_accum * len(self.streams)

    def step_batches(self) -> list[dict[str, torch.Tensor]]:
        """`grad_accum` micro-batches of each owned stream, stream by stream."""
        return [batches.next_batch() for batches in self.streams.values() for _ in range(self.grad_accum)]

    def samples_lost(self) -> dict[str, int]:
        """{"samples_corrupt", "samples_missing"}: the samples this rank's readers skipped as corrupt
        and the positions broken shards did not deliver, since this process started."""
        stats = [batches.loader.stats() for batches in self.streams.values()]
        return {"samples_corrupt": sum(s["corrupt"] for s in stats), "samples_missing": sum(s["missing"] for s in stats)}

    @property
    def packing_efficiency(self) -> float:
        real = sum(b.packing.real_tokens for b in self.streams.values())
        total = sum(b.packing.row_tokens for b in self.streams.values())
        return real / total if total else 0.0

    def state_dict(self) -> dict[str, Any]:
        """Each owned stream's position, keyed by stream index (as a string: JSON)."""
        return {"streams": {str(s): batches.state_dict() for s, batches in self.streams.items()}}

    def load_state_dict(self, stream_states: dict[int, dict[str, Any]]) -> None:
        """Restore every owned stream from `stream_states` (stream index -> `PackedBatches.state_dict()`)."""
        for s, batches in self.streams.items():
            batches.load_state_dict(stream_states[s])


def eval_rows(
    data: DataOptions,
    tasks: TaskMixConfig,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    *,
    seed: int,
    rank: int,
    world_size: int,
    index: ShardIndex | None = None,
) -> list[PackedRow]:
    """The fixed evaluation rows of one rank: `data.eval_rows` rows packed from the eval split, unshuffled.

    Epoch 0's tasks (seeded per study) make the eval set the same in every evaluation and run.
    """
    assert data.eval_split is not None
    stream = ShardStream(data.shards, data.eval_split, rank=rank, world_size=world_size, seed=seed, shuffle=False, expected_spec=spec, index=index)
    mixer = TaskMixer(tokenizer, spec, tasks, seed)
    rows: list[PackedRow] = []
    for studies in ShardLoader(stream, data.studies_per_batch):
        rows.extend(pack_examples(mixer.examples(studies, 0), data.seq_len, tokenizer.pad_token_id, data.overflow))
        if len(rows) >= data.eval_rows:
            break
    return rows[: data.eval_rows]
