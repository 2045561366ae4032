"""Next-token loss as a (sum, count) pair, so it can be normalised by real targets globally.

Averaging per batch or per rank weighs a token in a short batch more than one in a long batch;
the trainer instead all-reduces both numbers and divides once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radllm.tasks.example import IGNORE_INDEX


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of predicting labels[:, t+1] from logits[:, t], and the target count.

    Args:
        logits: [B, L, V] (any float dtype; the loss is computed in float32).
        labels: [B, L], IGNORE_INDEX where no loss is taken.

    Returns:
        sum_loss: float32 scalar; n_tokens: int64 scalar (number of non-ignored shifted labels).
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [batch, seq_len]")
    vocab = logits.shape[-1]
    shift_logits = logits[:, :-1].reshape(-1, vocab).float()  # [B*(L-1), V]
    shift_labels = labels[:, 1:].reshape(-1)  # [B*(L-1)]
    sum_loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    n_tokens = (shift_labels != IGNORE_INDEX).sum()
    return sum_loss, n_tokens
