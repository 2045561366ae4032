"""Model FLOPs utilisation (MFU): the FLOPs a step's real tokens need, over what the GPUs could do.

Per real token of a training step (forward and backward), with N the parameters of every matrix
multiply (all weights of two or more dimensions except the input embedding, whose lookup is no
matmul; a tied output head counts as the head's matmul) and N_t those of them that train:

    2·N (forward) + 2·N (backward to the inputs) + 2·N_t (backward to the weights)

that is 6·N for full fine-tuning and 4·N + 2·N_t under LoRA (frozen weights still run forward and
pass gradients back, they just get none). Attention adds 12 · layers · (heads · head_dim) per
(query, key) pair a query attends to (QKᵀ and AV, forward and backward), counting the causal
pairs inside each packed sample: n(n + 1)/2 for a sample of n tokens. Padding is computed but
counts nothing, and neither does gradient-checkpointing recomputation (this is MFU, not hardware
FLOPs utilisation).

Peak: `logging.peak_tflops` when set (dense bf16 TFLOP/s of one device), else the device name's
words matched against `PEAK_BF16_TFLOPS` (H100 PCIe and NVL are slower than SXM; "L4" is not
"L40S"). Unknown devices log no MFU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

#: Dense (no sparsity) bf16 tensor-core peak per device, TFLOP/s, from NVIDIA's datasheets; the
#: first pattern that matches the device name wins.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bG?H100\b|\bG?H200\b", 989.0),
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
)


def peak_flops(device_name: str, peak_tflops: float | None = None) -> float | None:
    """FLOP/s of one device: `peak_tflops` if given, else the table's, else None (unknown device)."""
    if peak_tflops is not None:
        return peak_tflops * 1e12
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops * 1e12
    return None


def _numel(param: torch.Tensor) -> int:
    return int(getattr(param, "ds_numel", param.numel()))  # ZeRO-3 partitions leave .numel() empty


def _dims(param: torch.Tensor) -> int:
    return len(getattr(param, "ds_shape", param.shape))


@dataclass(frozen=True)
class FlopsModel:
    """What one token costs in a model (see the module docstring)."""

    matmul_params: int
    trainable_matmul_params: int
    layers: int
    attention_width: int  # heads × head_dim

    def step_flops(self, real_tokens: float, attended_pairs: float) -> float:
        """Training FLOPs of `real_tokens` tokens that attend to `attended_pairs` (query, key) pairs."""
        per_token = 4 * self.matmul_params + 2 * self.trainable_matmul_params
        return per_token * real_tokens + 12 * self.layers * self.attention_width * attended_pairs


def flops_model(model: nn.Module, layers: int, attention_width: int) -> FlopsModel:
    """Count the matmul parameters of `model` (a causal LM, possibly LoRA-wrapped or ZeRO-3 partitioned)."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    matmul = trainable = 0
    for param in model.parameters():
        if param is embedding or _dims(param) < 2:
            continue
        matmul += _numel(param)
        trainable += _numel(param) if param.requires_grad else 0
    if head is not None and head.weight is embedding:  # tied: the one matrix is also the head's matmul
        matmul += _numel(embedding)
        trainable += _numel(embedding) if embedding.requires_grad else 0
    return FlopsModel(matmul, trainable, layers, attention_width)


def attended_pairs(cu_seqlens: torch.Tensor, real: torch.Tensor) -> int:
    """Causal (query, key) pairs of the real samples of a packed batch.

    Args:
        cu_seqlens: [S + 1] boundaries of every sample and padding run of the flattened batch.
        real: bool [B·L] whether each position is a real token (padding runs are not).
    """
    starts, lengths = cu_seqlens[:-1].long(), (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    keep = real.reshape(-1)[starts.clamp_max(real.numel() - 1)] & (lengths > 0)
    lengths = lengths[keep]
    return int((lengths * (lengths + 1) // 2).sum())
