"""DenseNet-121 laid out exactly like TorchXRayVision's, so its published weights load strictly.

TorchXRayVision (xrv) distributes DenseNet-121 classifiers trained on NIH, PadChest, CheXpert,
MIMIC-CXR and their union. Its module tree is the classic DenseNet-BC one with one input channel
and an 18-way classifier; only the parameter *names* matter for loading, so this is an independent
implementation that reproduces those names (``features.denseblock2.denselayer7.conv2.weight``)
and xrv's forward computation: ``classifier(avgpool(relu(features(x))))``.

Inputs follow xrv's convention: 224x224, one channel, pixel values scaled to [-1024, 1024].
xrv marks the outputs a given weights file was *not* trained on with NaN in its ``op_threshs``
buffer; `radllm.encoders.storage` reads that buffer to drop those outputs and to use the
remaining operating points as decision thresholds.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: xrv's output order (`xrv.datasets.default_pathologies`): index i of the classifier is name i.
XRV_PATHOLOGIES: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)

#: xrv outputs that mean the same as a CheXpert observation. Infiltration, Emphysema, Fibrosis,
#: Pleural_Thickening, Nodule, Mass and Hernia have no one-to-one CheXpert counterpart (they are
#: parts of broader CheXpert classes), so they are not exposed as labels.
XRV_TO_CHEXPERT: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Consolidation": "Consolidation",
    "Pneumothorax": "Pneumothorax",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Pneumonia": "Pneumonia",
    "Cardiomegaly": "Cardiomegaly",
    "Lung Lesion": "Lung Lesion",
    "Fracture": "Fracture",
    "Lung Opacity": "Lung Opacity",
    "Enlarged Cardiomediastinum": "Enlarged Cardiomediastinum",
}

XRV_INPUT_SIZE = 224
#: [0, 1] -> [-1024, 1024], i.e. xrv's ``normalize(img, maxval)``: (img / maxval) * 2048 - 1024.
XRV_INPUT_SCALE = 2048.0
XRV_INPUT_SHIFT = -1024.0
#: The buffer xrv registers for its per-output operating points (probabilities, NaN = untrained).
XRV_THRESHOLD_KEY = "op_threshs"


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bottleneck to bn_size*growth) then BN-ReLU-3x3 conv (growth channels).

    The output is the input with `growth` new channels appended (dense connectivity).
    """

    def __init__(self, in_channels: int, growth: int, bn_size: int) -> None:
        super().__init__()
        width = bn_size * growth
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv1(F.relu(self.norm1(x)))
        new = self.conv2(F.relu(self.norm2(new)))
        return torch.cat([x, new], dim=1)  # [B, C + growth, H, W]


class DenseBlock(nn.Sequential):
    """`n_layers` dense layers named ``denselayer1..n`` (the names are part of the weight layout)."""

    def __init__(self, n_layers: int, in_channels: int, growth: int, bn_size: int) -> None:
        super().__init__(
            OrderedDict(
                (f"denselayer{i + 1}", DenseLayer(in_channels + i * growth, growth, bn_size)) for i in range(n_layers)
            )
        )


class Transition(nn.Module):
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling halving the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), kernel_size=2, stride=2)


class XRVDenseNet(nn.Module):
    """DenseNet-BC backbone; defaults give DenseNet-121 as trained by TorchXRayVision.

    Implements the backbone protocol of `radllm.encoders.encoder.CXREncoder`: `feature_maps`
    returns activations at five depths (stem, after dense blocks 1-3, final) and `classify` maps
    the last one to `num_outputs` logits.
    """

    def __init__(
        self,
        num_outputs: int = len(XRV_PATHOLOGIES),
        growth: int = 32,
        blocks: tuple[int, ...] = (6, 12, 24, 16),
        bn_size: int = 4,
        init_features: int = 64,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        stem = OrderedDict(
            conv0=nn.Conv2d(in_channels, init_features, kernel_size=7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(init_features),
        )
        self.features = nn.Sequential(stem)
        channels = init_features
        for i, n_layers in enumerate(blocks, start=1):
            self.features.add_module(f"denseblock{i}", DenseBlock(n_layers, channels, growth, bn_size))
            channels += n_layers * growth
            if i < len(blocks):
                self.features.add_module(f"transition{i}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_outputs)
        self.n_blocks = len(blocks)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [B, 1, 224, 224] in xrv scale -> five maps, coarsest last (input to `classify`)."""
        f = self.features
        x = F.relu(f.norm0(f.conv0(x)))  # [B, 64, H/2, W/2]
        maps = [x]
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # [B, 64, H/4, W/4]
        for i in range(1, self.n_blocks + 1):
            x = getattr(f, f"denseblock{i}")(x)
            if i < self.n_blocks:
                maps.append(x)  # block i output: [B, C_i, H/2^(i+1), W/2^(i+1)]
                x = getattr(f, f"transition{i}")(x)
        maps.append(F.relu(f.norm5(x)))  # [B, 1024, H/32, W/32]
        return maps

    def classify(self, last: torch.Tensor) -> torch.Tensor:
        """Global average pool + linear, as xrv does: [B, C, h, w] -> [B, num_outputs]."""
        return self.classifier(last.mean(dim=(2, 3)))
