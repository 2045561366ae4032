"""The optimizer and LR schedule handed to `deepspeed.initialize` as client objects.

AdamW, in the implementation that suits where its states live: torch's fused kernel when the
optimizer runs on the GPU, DeepSpeed's `DeepSpeedCPUAdam` (vectorised C++ over the fp32 master
partition, several times faster than torch's CPU AdamW; `benchmarks/cpu_adam.py`) when ZeRO
offloads the optimizer to the CPU, and torch's on a CPU-only machine without offload. The CPU op
is compiled once by `radllm build-ops` (`make venv`). Weight decay (decoupled, towards 0) applies
to matrices only; norms and biases (1-D parameters) are never decayed. The schedule is the one every
radllm trainer uses (`radllm.recipe.schedule.warmup_cosine`): linear warmup then cosine decay to
`lr · min_lr_ratio` at `schedule.max_steps`; DeepSpeed steps it after every applied optimizer step
and stores it in the checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from radllm.recipe.schedule import warmup_cosine
from radllm.training.config import OptimOptions


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into decayed (ndim >= 2) and not decayed (norms, biases)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        shape = getattr(param, "ds_shape", param.shape)
        (decay if len(shape) >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class _LRLambda:
    """Picklable schedule function: the multiplier of the base lr at a step.

    LambdaLR stores a callable object's attributes in its state dict and sets them back on load,
    so the attribute names are part of the checkpoint format.
    """

    def __init__(self, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> None:
        self.warmup_steps, self.max_steps, self.min_lr_ratio = warmup_steps, max_steps, min_lr_ratio

    def __call__(self, step: int) -> float:
        return warmup_cosine(step, 1.0, self.warmup_steps, self.max_steps, self.min_lr_ratio)


def build_optimizer(
    model: nn.Module, options: OptimOptions, max_steps: int, cuda: bool, offload: bool = False
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `parameter_groups` (see the module docstring for which) and its warmup + cosine LambdaLR.

    Args:
        offload: ZeRO keeps the optimizer states on the CPU (`offload_optimizer`).
    """
    groups = parameter_groups(model, options.weight_decay)
    betas = (options.beta1, options.beta2)
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer: torch.optim.Optimizer = DeepSpeedCPUAdam(groups, lr=options.lr, betas=betas, eps=options.eps, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=options.lr, betas=betas, eps=options.eps, fused=cuda or None)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _LRLambda(options.warmup_steps, max_steps, options.min_lr_ratio))
    return optimizer, schedule
