"""The `--device` option every command shares: `auto`, `cpu`, `cuda`, `cuda:N`."""

from __future__ import annotations

import torch

from radllm.errors import RadllmError


def resolve_device(device: str) -> torch.device:
    """`auto` = cuda when available, else cpu; anything else is passed to torch (a bad name is a RadllmError)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise RadllmError(f"--device {device!r}: {err}") from err
