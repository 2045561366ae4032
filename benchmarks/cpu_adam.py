"""One AdamW step over offloaded fp32 parameters: DeepSpeedCPUAdam vs torch's AdamW on the CPU.

    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/cpu_adam.py               # 100M parameters, 5 steps each
    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/cpu_adam.py --params 20e6 --steps 10

What ZeRO optimizer offload runs on every optimizer step: the fp32 master partition, its gradient
and both Adam moments live in CPU memory and the CPU updates them. The parameters are split like
a transformer's (matrices with weight decay, a few vectors without), both optimizers get the same
parameter groups, gradients and hyperparameters (radllm's `build_optimizer` with and without
`offload`), and the first step of each is a warm-up. Prints the median step time of each, their
ratio, and the largest difference between the two updated parameter sets.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from radllm.training.comm_op import prepare_op_builds
from radllm.training.config import OptimOptions
from radllm.training.optim import build_optimizer


def model_of(params: int, width: int = 4096) -> nn.Module:
    """Matrices of `width` columns holding about `params` elements, plus one norm vector per matrix."""
    layers = max(1, params // (width * width))
    rows = params // (layers * width)
    model = nn.Module()
    model.weights = nn.ParameterList([nn.Parameter(torch.randn(rows, width) * 0.02) for _ in range(layers)])
    model.norms = nn.ParameterList([nn.Parameter(torch.ones(width)) for _ in range(layers)])
    return model


def time_steps(offload: bool, params: int, steps: int, grads: list[torch.Tensor]) -> tuple[list[float], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = model_of(params)
    options = OptimOptions(lr=1e-4, weight_decay=0.1)
    optimizer, _ = build_optimizer(model, options, max_steps=100, cuda=False, offload=offload)
    for param, grad in zip(model.parameters(), grads):
        param.grad = grad
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[1:], [p.detach().clone() for p in model.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=100e6)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    prepare_op_builds()  # DeepSpeedCPUAdam's op from radllm's extensions directory (`radllm build-ops`)
    params = int(args.params)
    torch.manual_seed(1)
    grads = [torch.randn_like(p) * 1e-3 for p in model_of(params).parameters()]
    total = sum(g.numel() for g in grads)
    torch_times, torch_params = time_steps(False, params, args.steps, grads)
    ds_times, ds_params = time_steps(True, params, args.steps, grads)
    diff = max(float((a - b).abs().max()) for a, b in zip(torch_params, ds_params))
    t_torch, t_ds = statistics.median(torch_times), statistics.median(ds_times)
    print(f"{total / 1e6:.1f}M fp32 parameters, {torch.get_num_threads()} threads, median of {args.steps} steps")
    print(f"  torch AdamW (CPU):  {t_torch:7.3f} s/step")
    print(f"  DeepSpeedCPUAdam:   {t_ds:7.3f} s/step")
    print(f"DeepSpeedCPUAdam / torch AdamW step time: {t_ds / t_torch:.2f} ({t_torch / t_ds:.1f}x faster); "
          f"largest parameter difference after {args.steps + 1} steps: {diff:.1e}")


if __name__ == "__main__":
    main()
