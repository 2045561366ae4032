"""A small, fast CNN classifier for chest radiographs that the project trains itself.

It exists so the VQ-GAN feature loss and clinical-agreement metrics work without any external
weights (phantoms, CPU-only machines). BatchNorm + ReLU rather than GroupNorm + SiLU: on the
phantoms the BatchNorm variant learned the subtlest finding (a rib fracture, a few pixels wide at
128 px) reliably within the CPU budget, where GroupNorm mostly stayed at chance. Used frozen (eval
mode), BatchNorm applies fixed running statistics, so outputs do not depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SmallCNNOptions:
    """Architecture of `SmallCNN`; stored under ``arch_options`` in the encoder's config.json."""

    widths: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])  # channels per stage


class Stage(nn.Module):
    """Stride-2 3x3 conv then a 3x3 conv, each followed by BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.conv = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.down(x)))  # [B, C_out, H/2, W/2]
        return F.relu(self.norm2(self.conv(x)))


class SmallCNN(nn.Module):
    """Stages of halving resolution; the head sees average- and max-pooled final features.

    Max pooling lets a small focal finding (a nodule, a fracture) drive a logit even when it
    covers a few cells of the final map, which average pooling alone would dilute.
    """

    def __init__(self, num_outputs: int, options: SmallCNNOptions | None = None) -> None:
        super().__init__()
        options = options or SmallCNNOptions()
        if not options.widths or any(w <= 0 for w in options.widths):
            raise ValueError(f"small-cnn widths {options.widths} must be a non-empty list of positive channel counts")
        channels = [1, *options.widths]
        self.stages = nn.ModuleList(Stage(c_in, c_out) for c_in, c_out in zip(channels, channels[1:]))
        self.head = nn.Linear(2 * options.widths[-1], num_outputs)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [B, 1, S, S] normalised -> one map per stage, [B, widths[i], S/2^(i+1), S/2^(i+1)]."""
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def classify(self, last: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([last.mean(dim=(2, 3)), last.amax(dim=(2, 3))], dim=1)  # [B, 2C]
        return self.head(pooled)  # [B, num_outputs]
