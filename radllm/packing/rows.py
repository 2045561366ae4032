"""Packing task examples into fixed-length rows.

A row holds several examples back to back, then padding up to `seq_len`:

    input_ids     a0 a1 a2 a3 b0 b1 b2 P  P
    labels        -  -  a2 a3 -  b1 b2 -  -      (- = IGNORE_INDEX)
    position_ids  0  1  2  3  0  1  2  0  1      (restart per sample; padding is its own run)
    seq_lens      [4, 3]                         (real samples only)

Position ids restarting at 0 mark every sample start, which is what the attention hookup
(`radllm.modeling.packed_attention`) uses to keep attention inside samples.

Rows are filled one at a time: each takes the subset of the remaining examples whose total
length comes closest to `seq_len` (an exact subset-sum over example lengths, computed with an
integer used as a bitset, so it is fast for rows of thousands of tokens). Among equally good
subsets the longer examples are preferred, which keeps short ones back to fill later rows. On
radllm's length mix (image blocks of 258 tokens plus 40-400 token reports, seq_len 2048) this
fills over 99 % of the row positions (benchmarks/packing.py) where best-fit decreasing stalls at
94-96 %: with items of about a sixth of a row, greedy placement leaves rows of five long items
and a gap nothing fits into.

Examples longer than `seq_len` are dropped by default (a cut image block would teach images that
end mid-grid without ``<eoi>``) or truncated with ``overflow="truncate"``; either way
`PackingStats` counts them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from radllm.tasks.example import IGNORE_INDEX, TaskExample

OVERFLOW_POLICIES = ("drop", "truncate")


@dataclass
class PackedRow:
    """One fixed-length training row (all lists have length seq_len)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    seq_lens: list[int]  # length of each real sample, in row order (padding excluded)
    tasks: list[str] = field(default_factory=list)  # task of each sample
    keys: list[str] = field(default_factory=list)  # study key of each sample
    weights: list[float] | None = None  # loss weight per position when some sample is weighted, else None

    @property
    def seq_len(self) -> int:
        return len(self.input_ids)

    @property
    def n_real(self) -> int:
        """Tokens that belong to samples (not padding)."""
        return sum(self.seq_lens)

    @property
    def n_pad(self) -> int:
        return self.seq_len - self.n_real

    @property
    def cu_seqlens(self) -> list[int]:
        """Sample boundaries within the row: [0, l0, l0+l1, ...] (padding excluded)."""
        return [0, *accumulate(self.seq_lens)]


@dataclass
class PackingStats:
    """What happened to the examples offered to the packer."""

    examples: int = 0  # offered
    packed: int = 0  # placed into rows (truncated ones included)
    truncated: int = 0
    truncated_tokens: int = 0
    dropped_too_long: int = 0
    dropped_no_targets: int = 0  # nothing left to learn (all labels ignored, e.g. after truncation)
    rows: int = 0
    real_tokens: int = 0
    row_tokens: int = 0  # rows * seq_len

    @property
    def efficiency(self) -> float:
        """Fraction of row positions holding real tokens."""
        return self.real_tokens / self.row_tokens if self.row_tokens else 0.0


def packing_efficiency(rows: Sequence[PackedRow]) -> float:
    """Fraction of all positions in `rows` that hold real (non-padding) tokens."""
    total = sum(row.seq_len for row in rows)
    return sum(row.n_real for row in rows) / total if total else 0.0


def _admit(example: TaskExample, seq_len: int, overflow: str, stats: PackingStats) -> TaskExample | None:
    """The example as it will be packed (possibly truncated), or None when it is dropped."""
    stats.examples += 1
    if len(example) > seq_len:
        if overflow == "drop":
            stats.dropped_too_long += 1
            return None
        stats.truncated += 1
        stats.truncated_tokens += len(example) - seq_len
        weights = None if example.weights is None else example.weights[:seq_len]
        example = TaskExample(example.input_ids[:seq_len], example.labels[:seq_len], example.task, example.key, weights)
    if example.n_targets == 0:
        stats.dropped_no_targets += 1
        return None
    return example


def _best_subset(counts: dict[int, int], room: int) -> dict[int, int]:
    """How many examples of each length to take so their total is the largest value <= room.

    Bounded subset-sum: equal lengths are grouped into power-of-two bundles (at most
    room // length copies can ever fit), and bit t of `reachable[i]` says whether a total of t
    is reachable with the first i bundles. Bundles go longest first and the backtrack runs from
    the shortest, so a short bundle is used only when the best total needs it.
    """
    bundles: list[tuple[int, int]] = []  # (length, copies)
    for length in sorted(counts, reverse=True):
        left, size = min(counts[length], room // length), 1
        while left > 0:
            take = min(size, left)
            bundles.append((length, take))
            left -= take
            size *= 2
    window = (1 << (room + 1)) - 1
    reachable = [1]  # only the empty total 0
    for length, copies in bundles:
        reachable.append((reachable[-1] | (reachable[-1] << (length * copies))) & window)
    total = reachable[-1].bit_length() - 1
    chosen: dict[int, int] = {}
    for i in range(len(bundles) - 1, -1, -1):
        if not (reachable[i] >> total) & 1:  # the total needs bundle i
            length, copies = bundles[i]
            chosen[length] = chosen.get(length, 0) + copies
            total -= length * copies
    return chosen


def _fill_rows(examples: Sequence[TaskExample], seq_len: int, held: Sequence[TaskExample] = ()) -> list[list[TaskExample]]:
    """Split `examples` into rows, each filled as tightly as the remaining examples allow.

    The first row starts with `held` (examples held back by the streaming packer). Within a row
    examples keep their input order.
    """
    queues: dict[int, deque[int]] = {}
    for index, example in enumerate(examples):
        queues.setdefault(len(example), deque()).append(index)
    rows: list[list[TaskExample]] = []
    first = list(held)
    while queues or first:
        room = seq_len - sum(len(e) for e in first)
        chosen = _best_subset({length: len(q) for length, q in queues.items()}, room)
        picked = []
        for length, copies in chosen.items():
            picked.extend(queues[length].popleft() for _ in range(copies))
            if not queues[length]:
                del queues[length]
        rows.append(first + [examples[i] for i in sorted(picked)])
        first = []
    return rows


def _to_packed_row(row: Sequence[TaskExample], seq_len: int, pad_id: int) -> PackedRow:
    input_ids: list[int] = []
    labels: list[int] = []
    position_ids: list[int] = []
    for example in row:
        input_ids.extend(example.input_ids)
        labels.extend(example.labels)
        position_ids.extend(range(len(example)))
    n_pad = seq_len - len(input_ids)
    input_ids.extend([pad_id] * n_pad)
    labels.extend([IGNORE_INDEX] * n_pad)
    position_ids.extend(range(n_pad))
    weights = None
    if any(e.weights is not None for e in row):
        weights = [w for e in row for w in (e.weights if e.weights is not None else [1.0] * len(e))] + [0.0] * n_pad
    return PackedRow(
        input_ids=input_ids,
        labels=labels,
        position_ids=position_ids,
        seq_lens=[len(e) for e in row],
        tasks=[e.task for e in row],
        keys=[e.key for e in row],
        weights=weights,
    )


def _emit(rows: Iterable[Sequence[TaskExample]], seq_len: int, pad_id: int, stats: PackingStats) -> list[PackedRow]:
    packed = [_to_packed_row(row, seq_len, pad_id) for row in rows]
    stats.rows += len(packed)
    stats.packed += sum(len(row.seq_lens) for row in packed)
    stats.real_tokens += sum(row.n_real for row in packed)
    stats.row_tokens += len(packed) * seq_len
    return packed


def _check_args(seq_len: int, overflow: str) -> None:
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow={overflow!r}; expected one of {OVERFLOW_POLICIES}")


def pack_examples(
    examples: Iterable[TaskExample],
    seq_len: int,
    pad_id: int,
    overflow: str = "drop",
    stats: PackingStats | None = None,
) -> list[PackedRow]:
    """Pack all `examples` into rows of exactly `seq_len` tokens.

    Args:
        pad_id: token id used for padding (its labels are IGNORE_INDEX and it never attends to
            or is attended by real tokens, so any id works).
        overflow: "drop" or "truncate" examples longer than `seq_len`.
        stats: updated in place when given.

    Cost grows with rows × distinct lengths; for a long stream use `pack_stream`.
    """
    _check_args(seq_len, overflow)
    stats = stats if stats is not None else PackingStats()
    admitted = [e for e in (_admit(x, seq_len, overflow, stats) for x in examples) if e is not None]
    return _emit(_fill_rows(admitted, seq_len), seq_len, pad_id, stats)


def pack_carrying(
    examples: Iterable[TaskExample],
    seq_len: int,
    pad_id: int,
    held: Sequence[TaskExample] = (),
    overflow: str = "drop",
    stats: PackingStats | None = None,
) -> tuple[list[PackedRow], list[TaskExample]]:
    """Pack `examples` after the `held` ones, holding the least-filled row back for the next call.

    The rows of one call are packed from one batch of examples, so the last of them is usually
    part-empty (about a tenth of a small batch's tokens); held back, its examples start the next
    call's first row, which is always emitted, so no example waits more than two calls. Returns
    the rows to train on now and the examples held back (empty when every row is full).
    """
    _check_args(seq_len, overflow)
    stats = stats if stats is not None else PackingStats()
    admitted = [e for e in (_admit(x, seq_len, overflow, stats) for x in examples) if e is not None]
    rows = _fill_rows(admitted, seq_len, held)
    first_free = 1 if held else 0  # a row that already holds held-back examples goes out now
    kept: list[TaskExample] = []
    if len(rows) > first_free:
        hold = min(range(first_free, len(rows)), key=lambda i: sum(len(e) for e in rows[i]))
        if sum(len(e) for e in rows[hold]) < seq_len:
            kept = rows.pop(hold)
    return _emit(rows, seq_len, pad_id, stats), kept


def pack_stream(
    examples: Iterable[TaskExample],
    seq_len: int,
    pad_id: int,
    buffer_size: int = 512,
    overflow: str = "drop",
    stats: PackingStats | None = None,
) -> Iterator[PackedRow]:
    """Pack an (endless) stream in buffers of `buffer_size` examples (`pack_carrying` per buffer);
    what is left is flushed when the stream ends."""
    _check_args(seq_len, overflow)
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
    stats = stats if stats is not None else PackingStats()
    buffer: list[TaskExample] = []
    held: list[TaskExample] = []
    for example in examples:
        buffer.append(example)
        if len(buffer) < buffer_size:
            continue
        rows, held = pack_carrying(buffer, seq_len, pad_id, held, overflow, stats)
        buffer = []
        yield from rows
    if buffer or held:
        admitted = [e for e in (_admit(x, seq_len, overflow, stats) for x in buffer) if e is not None]
        yield from _emit(_fill_rows(admitted, seq_len, held), seq_len, pad_id, stats)
