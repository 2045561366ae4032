"""MFU accounting (`radllm.training.flops`) against hand-counted FLOPs and NVIDIA's datasheet peaks."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.training.flops import attended_pairs, flops_model, peak_flops


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


# Per layer: q 16x16, k 16x8, v 16x8 (2 KV heads of 4 dims), o 16x16, gate/up/down 16x40 each.
LAYER_MATMUL = 16 * 16 + 16 * 8 + 16 * 8 + 16 * 16 + 3 * 16 * 40
HEAD = 100 * 16


@pytest.mark.parametrize("tied", [False, True])
def test_matmul_parameters_leave_out_the_embedding_lookup_and_norms(tied):
    flops = flops_model(tiny_llama(tied), layers=2, attention_width=16)
    assert flops.matmul_params == flops.trainable_matmul_params == 2 * LAYER_MATMUL + HEAD
    # 1,000 real tokens in samples of 10 tokens: 100 samples x 55 causal pairs.
    expected = 6 * (2 * LAYER_MATMUL + HEAD) * 1000 + 12 * 2 * 16 * 5500
    assert flops.step_flops(1000, 5500) == expected


def test_lora_counts_frozen_weights_forward_and_backward_but_no_weight_gradient():
    model = get_peft_model(tiny_llama(False), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    flops = flops_model(model, layers=2, attention_width=16)
    adapters = 2 * ((2 * 16 + 16 * 2) + (2 * 16 + 8 * 2))  # layers x (q: A 2x16 + B 16x2, v: A 2x16 + B 8x2)
    assert flops.trainable_matmul_params == adapters
    assert flops.matmul_params == 2 * LAYER_MATMUL + HEAD + adapters
    assert flops.step_flops(1, 0) == 4 * flops.matmul_params + 2 * adapters


def test_attended_pairs_count_causal_pairs_of_real_samples_only():
    # Two rows of 8: samples of 3 and 4 then 1 padding position; a sample of 8.
    cu_seqlens = torch.tensor([0, 3, 7, 8, 16], dtype=torch.int32)
    real = torch.ones(16, dtype=torch.bool)
    real[7] = False
    assert attended_pairs(cu_seqlens, real) == 6 + 10 + 36


def test_peaks_follow_the_device_name_words_and_an_explicit_value_wins():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H100 NVL") == 835e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("NVIDIA L4") == 121e12  # not the L40S
    assert peak_flops("NVIDIA A10") == 125e12  # not the A100
    assert peak_flops("NVIDIA GeForce RTX 4090") is None
    assert peak_flops("NVIDIA GeForce RTX 4090", peak_tflops=165.2) == pytest.approx(165.2e12)
