"""Registry of backbone builders, referred to by name in config.json (``"arch"``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from radllm.encoders.densenet import XRVDenseNet
from radllm.encoders.small_cnn import SmallCNN, SmallCNNOptions
from radllm.errors import RadllmError

DENSENET121_XRV = "densenet121-xrv"
SMALL_CNN = "small-cnn"


def build_densenet121_xrv(num_outputs: int, options: Mapping[str, Any]) -> nn.Module:
    """TorchXRayVision's DenseNet-121 (no options: the layout is fixed by the published weights)."""
    if options:
        raise ValueError(f"{DENSENET121_XRV} takes no arch_options, got {sorted(options)}")
    return XRVDenseNet(num_outputs=num_outputs)


def build_small_cnn(num_outputs: int, options: Mapping[str, Any]) -> nn.Module:
    return SmallCNN(num_outputs, SmallCNNOptions(**options))


ARCHITECTURES: dict[str, Callable[[int, Mapping[str, Any]], nn.Module]] = {
    DENSENET121_XRV: build_densenet121_xrv,
    SMALL_CNN: build_small_cnn,
}


def build_backbone(arch: str, num_outputs: int, options: Mapping[str, Any], where: str) -> nn.Module:
    """Instantiate `arch` with `num_outputs` logits; errors name `where` (the config file)."""
    if arch not in ARCHITECTURES:
        raise RadllmError(f"{where}: unsupported encoder arch {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[arch](num_outputs, options)
    except (TypeError, ValueError) as err:
        raise RadllmError(f"{where}: invalid arch_options {dict(options)} for {arch}: {err}") from err
