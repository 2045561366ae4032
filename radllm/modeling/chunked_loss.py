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

Some models change the logits after the output layer: Gemma 2 and its successors soft-cap them,
logits = cap · tanh(logits / cap) (`final_logit_softcapping` in their config). NLL returned by the
layer would be squashed the same way, and the loss would be that of the uncapped logits. Given the
model's config, the layer applies the cap to each chunk itself (forward and backward) and turns the
model's own cap off while `targets` is active, so the NLL reaches the caller untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from radllm.errors import RadllmError
from radllm.tasks.example import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PretrainedConfig

#: Config keys of models that multiply their logits after the output layer (Cohere, Granite).
LOGIT_SCALE_KEYS = ("logit_scale", "logits_scaling")


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """fp32 logits [c, V] of `hidden` [c, H], soft-capped in place as the model would: cap · tanh(z / cap)."""
    logits = (hidden @ weight.t()).float()
    if softcap is not None:
        logits.div_(softcap).tanh_().mul_(softcap)
    return logits


class _ChunkedNLL(torch.autograd.Function):
    """NLL [N] of `targets` [N] under logits `hidden @ weight.T` (soft-capped when `softcap` is set), `chunk` rows at a time."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, softcap: float | None
    ) -> torch.Tensor:
        valid = targets != IGNORE_INDEX
        safe = targets.clamp_min(0)
        nll = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.zeros_like(nll)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            logits = _chunk_logits(hidden[rows], weight, softcap)  # [c, V]: the only buffer of this size
            picked = logits.gather(1, safe[rows, None]).squeeze(1)
            top = logits.amax(dim=-1, keepdim=True)
            lse[rows] = (top + logits.sub_(top).exp_().sum(dim=-1, keepdim=True).log_()).squeeze(1)  # in place: no second buffer
            nll[rows] = torch.where(valid[rows], lse[rows] - picked, 0.0)
            del logits  # before the next chunk's matmul allocates its own
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        ctx.softcap = softcap
        return nll

    @staticmethod
    def backward(ctx, grad_nll: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:  # type: ignore[override]
        hidden, weight, targets, lse = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        scale = torch.where(targets != IGNORE_INDEX, grad_nll.float(), 0.0)  # [N]
        safe = targets.clamp_min(0)
        for start in range(0, hidden.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            logits = _chunk_logits(hidden[rows], weight, ctx.softcap)
            # d nll / d logits = softmax - onehot(target), times the incoming gradient of each row.
            if ctx.softcap is None:
                grad_logits = logits.sub_(lse[rows, None]).exp_()  # in place: no second buffer
            else:
                grad_logits = logits.sub(lse[rows, None]).exp_()  # a second buffer: the cap's slope needs the logits
            grad_logits.scatter_add_(1, safe[rows, None], -torch.ones_like(lse[rows, None]))
            grad_logits.mul_(scale[rows, None])
            if ctx.softcap is not None:  # through the cap: d(cap · tanh(z / cap)) / dz = 1 − (capped / cap)²
                grad_logits.mul_(logits.div_(ctx.softcap).square_().neg_().add_(1))
            del logits
            if grad_weight is not None:  # accumulated in fp32 from the fp32 chunk, before any cast
                grad_weight.addmm_(grad_logits.t(), hidden[rows].float())
            if grad_hidden is not None:
                grad_hidden[rows] = grad_logits.to(hidden.dtype) @ weight
            del grad_logits
        return grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype), None, None, None


def chunked_token_nll(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_tokens: int, softcap: float | None = None
) -> torch.Tensor:
    """Per-token NLL aligned like `radllm.packing.token_nll`, without the [B, L, V] logits.

    Args:
        hidden: [B, L, H] final hidden states; weight: [V, H] output matrix;
        labels: [B, L] (IGNORE_INDEX = no loss); chunk_tokens: positions per chunk;
        softcap: the model's final-logit soft-cap (logits = cap · tanh(logits / cap)), or None.

    Returns:
        float32 [B, L]: out[b, t] = −log p(labels[b, t] | hidden[b, t − 1]); 0 at t = 0 and
        wherever labels are IGNORE_INDEX.
    """
    batch, length, size = hidden.shape
    flat = hidden[:, :-1].reshape(-1, size)
    targets = labels[:, 1:].reshape(-1)
    nll = _ChunkedNLL.apply(flat, weight, targets, max(1, chunk_tokens), softcap)
    return F.pad(nll.view(batch, length - 1), (1, 0))


class ChunkedLossHead(nn.Linear):
    """An output layer that returns the chunked per-token NLL while `targets` is active (see the module docstring)."""

    chunk_tokens: int
    labels: torch.Tensor | None
    model_config: "PretrainedConfig | None"
    softcap: float | None

    @classmethod
    def convert(cls, head: nn.Linear, chunk_tokens: int, model_config: "PretrainedConfig") -> "ChunkedLossHead":
        """Turn `head` itself into a `ChunkedLossHead` (same object, parameters and hooks).

        Args:
            head: the model's output layer; chunk_tokens: positions per chunk;
            model_config: the config of the model `head` belongs to (required: without it the
                layer could not know of a cap). Its `final_logit_softcapping` (read when `targets`
                is entered) is applied inside the chunked loss.

        Raises:
            RadllmError: the model rescales its logits after the output layer (Cohere's
                `logit_scale`, Granite's `logits_scaling`): the model would rescale the NLL this
                layer returns, so the loss would be wrong; train it with `model.loss_chunk_tokens: 0`.
        """
        if type(head) is not nn.Linear or head.bias is not None:
            raise TypeError(f"chunked loss needs a bias-free nn.Linear output layer, got {type(head).__name__}")
        text_config = model_config.get_text_config()
        for key in LOGIT_SCALE_KEYS:
            scale = getattr(text_config, key, None)
            if scale is not None and scale != 1:
                raise RadllmError(
                    f"model.loss_chunk_tokens = {chunk_tokens}: this {text_config.model_type} model scales its logits after the output "
                    f"layer ({key} = {scale}), which the chunked loss does not apply; set model.loss_chunk_tokens: 0 (whole logits)"
                )
        head.__class__ = cls
        head.chunk_tokens = chunk_tokens
        head.labels = None
        head.model_config = model_config
        head.softcap = None
        return head  # type: ignore[return-value]

    @contextmanager
    def targets(self, labels: torch.Tensor) -> Iterator[None]:
        """Inside, a forward returns the NLL of `labels` [B, L] instead of logits.

        The model's own soft-cap is off meanwhile: it would squash the NLL this layer returns.
        """
        # Multimodal configs keep the cap in their text config; a plain config is its own.
        text_config = None if self.model_config is None else self.model_config.get_text_config()
        self.softcap = None if text_config is None else getattr(text_config, "final_logit_softcapping", None)
        self.labels = labels
        if self.softcap is not None:
            text_config.final_logit_softcapping = None
        try:
            yield
        finally:
            if self.softcap is not None:
                text_config.final_logit_softcapping = self.softcap
            self.labels = None
            self.softcap = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.labels is None:
            return super().forward(hidden)
        return chunked_token_nll(hidden, self.weight, self.labels, self.chunk_tokens, self.softcap)
