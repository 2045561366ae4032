"""Next-token NLL straight from hidden states, a chunk of positions at a time: logits never exist whole.

The fp32 logits of a micro-batch are [B, L, V]: 2.6 GB for one 2,048-token row of a 7B Llama with
its vocabulary grown by the image codes, before cross-entropy's own copies, and V grows with every
visual token. `chunked_token_nll` computes the same per-token NLL as `radllm.packing.token_nll`
from the hidden states and the output matrix, `chunk_tokens` positions at a time, and keeps only
each position's log-sum-exp for the backward pass, which recomputes one chunk's logits at a time
(one extra matmul of the head: the usual price of not storing activations).

`ChunkedLossHead` puts that inside the model's own output layer. The trainer's `lm_head` (an
`nn.Linear`) gets this subclass as its class, so its parameter, its name in the state dict, its
tying to the embedding and the hooks ZeRO-3 put on it (gathering the partitioned matrix for the
layer's forward and again for its backward) all stay as they are. While `targets(labels)` is
active, the layer returns the per-token NLL [B, L] in place of logits; otherwise it is the plain
linear layer (generation, report samples, grounding scores).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from radllm.tasks.example import IGNORE_INDEX


class _ChunkedNLL(torch.autograd.Function):
    """NLL [N] of `targets` [N] under logits `hidden @ weight.T`, computed `chunk` rows at a time."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:  # type: ignore[override]
        valid = targets != IGNORE_INDEX
        safe = targets.clamp_min(0)
        nll = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.zeros_like(nll)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            logits = (hidden[rows] @ weight.t()).float()  # [c, V]: the only buffer of this size
            picked = logits.gather(1, safe[rows, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            lse[rows] = (top + logits.sub_(top).exp_().sum(dim=-1, keepdim=True).log_()).squeeze(1)  # in place: no second buffer
            nll[rows] = torch.where(valid[rows], lse[rows] - picked, 0.0)
            del logits  # before the next chunk's matmul allocates its own
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        return nll

    @staticmethod
    def backward(ctx, grad_nll: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        scale = torch.where(targets != IGNORE_INDEX, grad_nll.float(), 0.0)  # [N]
        safe = targets.clamp_min(0)
        for start in range(0, hidden.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            # d nll / d logits = softmax - onehot(target), times the incoming gradient of each row.
            grad_logits = (hidden[rows] @ weight.t()).float().sub_(lse[rows, None]).exp_()
            grad_logits.scatter_add_(1, safe[rows, None], -torch.ones_like(lse[rows, None]))
            grad_logits.mul_(scale[rows, None])
            if grad_weight is not None:  # accumulated in fp32 from the fp32 chunk, before any cast
                grad_weight.addmm_(grad_logits.t(), hidden[rows].float())
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits.to(hidden.dtype) @ weight
            del grad_logits
        return grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype), None, None


def chunked_token_nll(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int) -> torch.Tensor:
    """Per-token NLL aligned like `radllm.packing.token_nll`, without the [B, L, V] logits.

    Args:
        hidden: [B, L, H] final hidden states; weight: [V, H] output matrix;
        labels: [B, L] (IGNORE_INDEX = no loss); chunk_tokens: positions per chunk.

    Returns:
        float32 [B, L]: out[b, t] = −log p(labels[b, t] | hidden[b, t − 1]); 0 at t = 0 and
        wherever labels are IGNORE_INDEX.
    """
    batch, length, size = hidden.shape
    flat = hidden[:, :-1].reshape(-1, size)
    targets = labels[:, 1:].reshape(-1)
    nll = _ChunkedNLL.apply(flat, weight, targets, max(1, chunk_tokens))
    return F.pad(nll.view(batch, length - 1), (1, 0))


class ChunkedLossHead(nn.Linear):
    """An output layer that returns the chunked per-token NLL while `targets` is active (see the module docstring)."""

    chunk_tokens: int
    labels: torch.Tensor | None

    @classmethod
    def convert(cls, head: nn.Linear, chunk_tokens: int) -> "ChunkedLossHead":
        """Turn `head` itself into a `ChunkedLossHead` (same object, parameters and hooks)."""
        if type(head) is not nn.Linear or head.bias is not None:
            raise TypeError(f"chunked loss needs a bias-free nn.Linear output layer, got {type(head).__name__}")
        head.__class__ = cls
        head.chunk_tokens = chunk_tokens
        head.labels = None
        return head  # type: ignore[return-value]

    @contextmanager
    def targets(self, labels: torch.Tensor) -> Iterator[None]:
        """Inside, a forward returns the NLL of `labels` [B, L] instead of logits."""
        self.labels = labels
        try:
            yield
        finally:
            self.labels = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return super().forward(hidden)
        return chunked_token_nll(hidden, self.weight, self.labels, self.chunk_tokens)
