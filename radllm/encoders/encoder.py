"""`CXREncoder`: one interface over every chest X-ray classifier backbone.

Callers (the VQ-GAN feature loss, clinical-agreement metrics) hand it images as they have them,
[B, 1, H, W] in [0, 1] at any size; resizing and the backbone's own pixel scaling happen inside,
differentiably, so gradients reach the input even when the encoder itself is frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radllm.encoders.spec import EncoderSpec


class CXREncoder(nn.Module):
    """A backbone plus the spec that maps its outputs to CheXpert findings.

    The backbone must provide ``feature_maps(x) -> list[Tensor]`` (coarsest last) and
    ``classify(last_map) -> [B, n_outputs]``. Its state dict is what ``model.safetensors``
    holds, with the backbone's own key names (for DenseNet-121, TorchXRayVision's).
    """

    def __init__(self, backbone: nn.Module, spec: EncoderSpec) -> None:
        super().__init__()
        spec.validate(f"{spec.arch} encoder")
        self.backbone = backbone
        self.spec = spec
        # Derived from the spec (saved in config.json), hence not part of the weights file.
        self.register_buffer("thresholds", torch.tensor(spec.thresholds, dtype=torch.float32), persistent=False)
        self.register_buffer("output_indices", torch.tensor(spec.output_indices, dtype=torch.long), persistent=False)

    @property
    def label_names(self) -> list[str]:
        return list(self.spec.label_names)

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def device(self) -> torch.device:
        return self.thresholds.device

    def set_thresholds(self, thresholds: list[float]) -> None:
        """Replace the decision thresholds (probabilities, one per label), e.g. after tuning on val."""
        self.spec.thresholds = [float(t) for t in thresholds]
        self.spec.validate(f"{self.spec.arch} encoder")
        self.thresholds.copy_(torch.tensor(self.spec.thresholds, dtype=torch.float32))

    def freeze(self) -> "CXREncoder":
        """Eval mode and no parameter gradients: the state used for losses and metrics."""
        self.eval()
        self.requires_grad_(False)
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] in [0, 1] -> [B, 1, S, S] in the backbone's pixel scale."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"CXR encoder expects images shaped [B, 1, H, W], got {tuple(x.shape)}")
        size = self.spec.input_size
        x = x.to(device=self.device, dtype=torch.float32)
        if x.shape[-2:] != (size, size):
            # Antialiasing when shrinking matches how training images were resized (area-like).
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x * self.spec.input_scale + self.spec.input_shift

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps from several depths (finest first) for perceptual/feature losses."""
        return self.backbone.feature_maps(self.prepare(x))

    def classify_features(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Logits [B, len(label_names)] from the maps `features` returned (no second backbone pass)."""
        logits = self.backbone.classify(maps[-1])  # [B, n_outputs]
        return logits.index_select(1, self.output_indices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, len(label_names)]."""
        return self.classify_features(self.features(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities [B, len(label_names)]."""
        return torch.sigmoid(self(x))

    def predict_findings(self, x: torch.Tensor) -> torch.Tensor:
        """Binary findings [B, len(label_names)] (int64 0/1) at the stored thresholds."""
        return (self.predict(x) >= self.thresholds).long()
