"""The chunked output-layer loss against whole logits: same per-token NLL and the same gradients.

Reference: `radllm.packing.token_nll` on `hidden @ weight.T` computed whole, differentiated by
autograd. The trainer's use under ZeRO-3 on 2 ranks is covered by tests/test_training_zero3.py
(run A trains with the chunked head and matches a whole-logits single-process reference).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from radllm.modeling.chunked_loss import ChunkedLossHead, chunked_token_nll
from radllm.packing import token_nll


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 9, 16, generator=generator, dtype=torch.float64)
    weight = torch.randn(50, 16, generator=generator, dtype=torch.float64) / 4
    labels = torch.randint(0, 50, (3, 9), generator=generator)
    labels[0, :4] = -100  # a prompt
    labels[2, 5:] = -100  # padding
    labels[:, 0] = -100
    return hidden, weight, labels


@pytest.mark.parametrize("chunk", [1, 5, 7, 24, 1000])
def test_chunked_nll_and_gradients_equal_whole_logits(chunk):
    hidden, weight, labels = _inputs()
    upstream = torch.rand(3, 9, dtype=torch.float32, generator=torch.Generator().manual_seed(1))  # loss weights, scale
    h1, w1 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    reference = token_nll(h1 @ w1.t(), labels)
    (reference * upstream).sum().backward()
    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    ours = chunked_token_nll(h2, w2, labels, chunk)
    (ours * upstream).sum().backward()
    assert ours.shape == reference.shape == labels.shape and ours.dtype == torch.float32
    assert torch.allclose(ours, reference, rtol=1e-6, atol=1e-6)
    assert bool((ours[labels == -100] == 0).all())
    assert torch.allclose(h2.grad, h1.grad, rtol=1e-5, atol=1e-7)
    assert torch.allclose(w2.grad, w1.grad, rtol=1e-5, atol=1e-7)


def test_hand_computed_two_token_case():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # position 0 predicts label 1
    weight = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([[-100, 2]])
    # logits of position 0: weight @ [1, 0] = [2, 0, 1]; label 2 has logit 1.
    expected = math.log(math.exp(2) + 1 + math.exp(1)) - 1  # 1.40761
    assert chunked_token_nll(hidden, weight, labels, 1)[0].tolist() == pytest.approx([0.0, expected], rel=1e-6)


def test_head_is_the_same_linear_layer_and_returns_logits_outside_targets():
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=False)
    weight = head.weight
    hidden, _, labels = _inputs()
    hidden = hidden.float()
    logits = head(hidden)
    same = ChunkedLossHead.convert(head, chunk_tokens=4)
    assert same is head and head.weight is weight and isinstance(head, nn.Linear)
    assert torch.equal(head(hidden), logits)  # plain linear layer outside `targets`
    with head.targets(labels):
        nll = head(hidden)
    assert torch.allclose(nll, token_nll(logits, labels), rtol=1e-5, atol=1e-6)
    assert head.labels is None and head(hidden).shape == logits.shape
    with pytest.raises(TypeError, match="bias-free nn.Linear"):
        ChunkedLossHead.convert(nn.Linear(4, 4, bias=True), 4)
