"""Batch tensors from packed rows (training) or from single examples (comparison, evaluation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from radllm.packing.rows import PackedRow
from radllm.tasks.example import IGNORE_INDEX, TaskExample


def block_causal_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, L, L] mask, True where query i may attend to key j.

    A sample starts wherever the position id is 0, so key j is visible to query i when both lie
    in the same sample (or the same padding run) and j <= i. Every query sees at least itself,
    so no softmax row is empty.
    """
    if position_ids.ndim != 2:
        raise ValueError(f"position_ids must be [batch, seq_len], got shape {tuple(position_ids.shape)}")
    length = position_ids.shape[1]
    segment = (position_ids == 0).cumsum(dim=-1)  # [B, L]: index of the sample each token is in
    same_segment = segment[:, :, None] == segment[:, None, :]  # [B, L, L]
    causal = torch.ones(length, length, dtype=torch.bool, device=position_ids.device).tril()  # [L, L]
    return (same_segment & causal)[:, None]  # [B, 1, L, L]


def collate_packed(rows: Sequence[PackedRow]) -> dict[str, torch.Tensor]:
    """Stack rows of equal length into a batch.

    The batch describes sample boundaries only (`cu_seqlens`, `position_ids`); how attention is
    kept inside them is the model side's choice (`radllm.modeling.model_inputs_for_packed_batch`
    builds a flex block mask, flash-attn's varlen arguments or SDPA's dense mask on the device),
    so the data code never needs to know the attention kernel.

    Returns:
        input_ids, labels, position_ids: int64 [B, L].
        cu_seqlens: int32 [S + 1], boundaries of every sample *and* padding run in the batch
            flattened to B*L tokens (the layout flash-attn's varlen kernels take).
        max_seqlen: int64 scalar, the longest of those S runs.
        loss_weights: only when some row carries weights, float32 [B, L], the loss weight of the
            label at each position (1.0 for the positions of unweighted rows).
    """
    if not rows:
        raise ValueError("cannot collate an empty list of rows")
    length = rows[0].seq_len
    if any(row.seq_len != length for row in rows):
        raise ValueError(f"rows differ in length: {sorted({row.seq_len for row in rows})}")
    runs: list[int] = []
    for row in rows:
        runs.extend(row.seq_lens)
        if row.n_pad:
            runs.append(row.n_pad)
    cu_seqlens = torch.zeros(len(runs) + 1, dtype=torch.int32)
    cu_seqlens[1:] = torch.tensor(runs, dtype=torch.int32).cumsum(0)
    batch = {
        "input_ids": torch.tensor([row.input_ids for row in rows], dtype=torch.long),
        "labels": torch.tensor([row.labels for row in rows], dtype=torch.long),
        "position_ids": torch.tensor([row.position_ids for row in rows], dtype=torch.long),
        "cu_seqlens": cu_seqlens,
        "max_seqlen": torch.tensor(max(runs), dtype=torch.long),
    }
    if any(row.weights is not None for row in rows):
        weights = [row.weights if row.weights is not None else [1.0] * length for row in rows]
        batch["loss_weights"] = torch.tensor(weights, dtype=torch.float32)
    return batch


def collate_padded(examples: Sequence[TaskExample], pad_id: int, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest one (rounded up to `pad_to_multiple_of`).

    Returns input_ids, labels (IGNORE_INDEX on padding) and the usual 2D attention_mask
    (1 = real token), all int64 [B, L], for plain HF forward passes.
    """
    if not examples:
        raise ValueError("cannot collate an empty list of examples")
    if pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be at least 1, got {pad_to_multiple_of}")
    longest = max(len(e) for e in examples)
    length = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for i, example in enumerate(examples):
        n = len(example)
        input_ids[i, :n] = torch.tensor(example.input_ids)
        labels[i, :n] = torch.tensor(example.labels)
        mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}
