"""The chunked output-layer loss against whole logits: same per-token NLL and the same gradients.

Reference: `radllm.packing.token_nll` on `hidden @ weight.T` computed whole, differentiated by
autograd; for a soft-capped model (a tiny Gemma 2), `F.cross_entropy` of the model's own capped
logits. The trainer's use under ZeRO-3 on 2 ranks is covered by tests/test_training_zero3.py
(run A trains with the chunked head and matches a whole-logits single-process reference).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig

from radllm.errors import RadllmError
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
    same = ChunkedLossHead.convert(head, 4, LlamaConfig())
    assert same is head and head.weight is weight and isinstance(head, nn.Linear)
    assert torch.equal(head(hidden), logits)  # plain linear layer outside `targets`
    with head.targets(labels):
        nll = head(hidden)
    assert torch.allclose(nll, token_nll(logits, labels), rtol=1e-5, atol=1e-6)
    assert head.labels is None and head(hidden).shape == logits.shape
    with pytest.raises(TypeError, match="bias-free nn.Linear"):
        ChunkedLossHead.convert(nn.Linear(4, 4, bias=True), 4, LlamaConfig())


@pytest.mark.parametrize(("config_class", "key"), [("CohereConfig", "logit_scale"), ("GraniteConfig", "logits_scaling")])
def test_a_model_that_rescales_its_logits_is_refused_with_the_setting_that_trains_it(config_class, key):
    import transformers

    config = getattr(transformers, config_class)(**{key: 0.5})
    with pytest.raises(RadllmError, match=f"{key} = 0.5.*set model.loss_chunk_tokens: 0"):
        ChunkedLossHead.convert(nn.Linear(8, 16, bias=False), 4, config)
    ChunkedLossHead.convert(nn.Linear(8, 16, bias=False), 4, getattr(transformers, config_class)(**{key: 1.0}))  # no scaling: fine


def _gemma2(softcap: float) -> nn.Module:
    """A tiny Gemma-2 (tied head) with weights large enough for the cap to bend its logits."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, final_logit_softcapping=softcap, attn_implementation="eager",
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).double()
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_()  # logits of std ~4: the cap of 3 is felt
    return model


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_soft_capped_model_nll_and_gradients_equal_cross_entropy_of_its_capped_logits(chunk):
    softcap = 3.0
    reference_model = _gemma2(softcap)
    model = copy.deepcopy(reference_model)
    generator = torch.Generator().manual_seed(2)
    input_ids = torch.randint(0, 40, (3, 9), generator=generator)
    labels = torch.randint(0, 40, (3, 9), generator=generator)
    labels[:, 0] = labels[0, :4] = labels[2, 5:] = -100  # no target, a prompt, padding
    upstream = torch.rand(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100, reduction="none")
        return F.pad(nll.view(3, 8), (1, 0))

    capped_logits = reference_model(input_ids=input_ids).logits
    assert capped_logits.abs().max() < softcap  # the model's own cap
    reference = cross_entropy(capped_logits)
    (reference * upstream).sum().backward()

    head = ChunkedLossHead.convert(model.get_output_embeddings(), chunk, model.config)
    with head.targets(labels):
        ours = model(input_ids=input_ids).logits  # the chunked NLL, not capped again by the model
    assert model.config.final_logit_softcapping == softcap  # the model's cap is back on afterwards
    (ours * upstream).sum().backward()
    assert torch.allclose(ours.double(), reference, rtol=1e-5, atol=1e-6)
    for (name, ours_param), reference_param in zip(model.named_parameters(), reference_model.parameters()):
        assert torch.allclose(ours_param.grad, reference_param.grad, rtol=1e-5, atol=1e-6), name

    with torch.no_grad():  # the same model without its cap: a loss the test can tell apart
        model.config.final_logit_softcapping = None
        uncapped = cross_entropy(model(input_ids=input_ids).logits)
    assert (uncapped - reference).abs().max() > 0.1
