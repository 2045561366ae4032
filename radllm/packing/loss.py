"""Next-token loss as a (sum, count) pair, so it can be normalised by real targets globally.

Averaging per batch or per rank weighs a token in a short batch more than one in a long batch;
the trainer instead all-reduces both numbers and divides once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from radllm.tasks.example import IGNORE_INDEX


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy, placed at the position of the label it scores.

    out[b, t] = −log p(labels[b, t] | tokens before t), predicted by logits[b, t−1]. Aligning to
    the label (not to the predicting position) lets a caller cut the tensor at sample boundaries
    of a packed row (`cu_seqlens`) and get each sample's own losses: a sample's first label is
    IGNORE_INDEX, so no loss ever lands on a boundary from the sample before.

    Args:
        logits: [B, L, V] (any float dtype; the loss is computed in float32).
        labels: [B, L], IGNORE_INDEX where no loss is taken.

    Returns:
        float32 [B, L]; 0 at t = 0 (nothing predicts it) and wherever labels are IGNORE_INDEX.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on [batch, seq_len]")
    batch, length, vocab = logits.shape
    shift_logits = logits[:, :-1].reshape(-1, vocab).float()  # [B*(L-1), V]
    shift_labels = labels[:, 1:].reshape(-1)  # [B*(L-1)]
    per_token = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="none")
    return F.pad(per_token.view(batch, length - 1), (1, 0))  # [B, L]


def target_mask(labels: torch.Tensor) -> torch.Tensor:
    """bool [B, L]: the labels a causal LM is scored on, at their own positions (as `token_nll`
    places losses): not IGNORE_INDEX and not at t = 0 of a row (nothing predicts it). The one
    target rule of training, evaluation loss, grounding and perplexity."""
    mask = labels != IGNORE_INDEX
    mask[:, 0] = False
    return mask


def count_targets(labels: torch.Tensor) -> torch.Tensor:
    """int64 scalar: the number of targets (`target_mask`)."""
    return target_mask(labels).sum()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of predicting labels[:, t+1] from logits[:, t], and the target count.

    Args:
        logits: [B, L, V] (any float dtype; the loss is computed in float32).
        labels: [B, L], IGNORE_INDEX where no loss is taken.

    Returns:
        sum_loss: float32 scalar; n_tokens: int64 scalar (number of non-ignored shifted labels).
    """
    return token_nll(logits, labels).sum(), count_targets(labels)
