"""Scoring packed rows with a causal LM: the per-token NLL of a batch (`packed_token_nll`, the one
forward every loss and score of radllm runs: the trainer's loss, grounding, perplexity), and the
per-example NLL built on it (`per_example_nll`): one forward for many examples, one number each.

The trainer's loss needs only sums over all tokens; comparing two versions of the same example
(e.g. with its own image and with another study's, `radllm.training.grounding`) needs the summed
NLL of every example on its own. Scoring examples one at a time wastes most of each forward on
padding, so they are packed into rows (`radllm.packing`, attention never crosses samples), the
per-token loss of a batch is computed once (`token_nll`, the training loss's own cross-entropy)
and cut at the sample boundaries the batch already carries (`cu_seqlens`).

Packing reorders examples; each is packed under its index as key, so `PackedRow.keys` says which
example every sample is. Rows are dealt round-robin to ranks (rank r scores rows r, r+W, ...).
Under ZeRO-3 every forward gathers parameters collectively, so every rank runs the same number of
forwards, known to all ranks without communication (they build the same rows): a rank that has run
out of rows repeats row 0 and drops the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from radllm.errors import RadllmError
from radllm.modeling.chunked_loss import ChunkedLossHead
from radllm.modeling.packed_attention import model_inputs_for_packed_batch
from radllm.packing import PackedRow, collate_packed, pack_examples, target_mask, token_nll
from radllm.tasks import TaskExample


def packed_token_nll(
    model: Callable[..., Any],
    batch: dict[str, torch.Tensor],
    attn_implementation: str,
    dtype: torch.dtype,
    loss_head: ChunkedLossHead | None = None,
) -> torch.Tensor:
    """float32 [B, L]: the NLL of each target of a collated packed batch at its label's position
    (`radllm.packing.token_nll`'s alignment; 0 off `target_mask`).

    Args:
        model: a Hugging Face causal LM or a DeepSpeed engine wrapping one, called with the inputs
            `attn_implementation` takes (`model_inputs_for_packed_batch`: attention never crosses
            the samples of a row); its mode (train/eval) and grad state are the caller's.
        batch: `radllm.packing.collate_packed` output (plus any extra keys), on the model's device.
        loss_head: the model's output layer converted to a `ChunkedLossHead`: the NLL is computed
            from hidden states a chunk at a time and the logits never exist whole.
    """
    inputs = model_inputs_for_packed_batch(batch, attn_implementation, dtype)
    if loss_head is None:
        return token_nll(model(**inputs).logits, batch["labels"])
    with loss_head.targets(batch["labels"]):
        return model(**inputs).logits  # [B, L]: the chunked head's NLL in place of logits


@dataclass(frozen=True)
class PackedScoring:
    """How examples are packed, batched and split over ranks for scoring.

    tokens_per_row: row length (rows grow to the longest example, so none is dropped or cut);
    rows_per_batch: rows per forward; rank / world_size: this process's share of the rows.
    """

    attn_implementation: str
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"
    tokens_per_row: int = 2048
    rows_per_batch: int = 4
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.tokens_per_row < 2 or self.rows_per_batch < 1:
            raise RadllmError(f"tokens_per_row = {self.tokens_per_row} (expected >= 2), rows_per_batch = {self.rows_per_batch} (>= 1)")
        if not 0 <= self.rank < self.world_size:
            raise RadllmError(f"rank {self.rank} is not in a world of {self.world_size}")


def forwards_per_rank(n_rows: int, scoring: PackedScoring) -> int:
    """Forwards each rank runs: enough for the rank holding the most rows (rank 0)."""
    rows_of_rank0 = -(-n_rows // scoring.world_size)
    return -(-rows_of_rank0 // scoring.rows_per_batch)


def segment_sums(values: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Sums of `values` flattened over the runs [cu[i], cu[i+1]) (float64 [S])."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).to(values.device, torch.long)
    runs = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths)  # [B*L]
    return torch.zeros(len(lengths), dtype=torch.float64, device=values.device).index_add_(0, runs, values.reshape(-1).double())


def run_examples(rows: Sequence[PackedRow]) -> list[int]:
    """Example index of each run of `collate_packed(rows)`'s cu_seqlens: -1 for padding runs."""
    out: list[int] = []
    for row in rows:
        out.extend(int(key) for key in row.keys)
        if row.n_pad:
            out.append(-1)
    return out


@torch.no_grad()
def per_example_nll(
    model: Callable[..., Any],
    examples: Sequence[TaskExample],
    pad_id: int,
    scoring: PackedScoring,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL (nats) and target count of every example, over this rank's share of the rows.

    Args:
        model: called as `model(**model_inputs_for_packed_batch(...))`, returning `.logits`
            [B, L, V]: a Hugging Face causal LM or a DeepSpeed engine wrapping one. The caller
            puts it in eval mode.
        examples: scored in full (rows are made at least as long as the longest).
        pad_id: id of padding tokens (never attended to, never scored).

    Returns:
        float64 [N] sums and float64 [N] counts, indexed like `examples`; examples scored by
        other ranks hold 0, so a sum over ranks (all-reduce) gives every example's values.
    """
    sums = torch.zeros(len(examples), dtype=torch.float64)
    counts = torch.zeros(len(examples), dtype=torch.float64)
    if not examples:
        return sums, counts
    indexed = [replace(example, key=str(index)) for index, example in enumerate(examples)]
    rows = pack_examples(indexed, max(scoring.tokens_per_row, max(len(e) for e in examples)), pad_id)
    mine = rows[scoring.rank :: scoring.world_size]
    for index in range(forwards_per_rank(len(rows), scoring)):
        chunk = mine[index * scoring.rows_per_batch : (index + 1) * scoring.rows_per_batch]
        batch = collate_packed(chunk or rows[:1])
        batch = {k: v.to(scoring.device) for k, v in batch.items()}
        token_losses = packed_token_nll(model, batch, scoring.attn_implementation, scoring.dtype)  # [B, L]
        if not chunk:
            continue  # the lockstep forward of a rank without rows left
        run_nll = segment_sums(token_losses, batch["cu_seqlens"]).cpu()  # [S]
        run_count = segment_sums(target_mask(batch["labels"]), batch["cu_seqlens"]).cpu()
        owner = torch.tensor(run_examples(chunk))
        real = owner >= 0
        sums.index_add_(0, owner[real], run_nll[real])
        counts.index_add_(0, owner[real], run_count[real])
    return sums, counts
