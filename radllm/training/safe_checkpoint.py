"""Reading DeepSpeed checkpoints without letting them run code.

DeepSpeed's checkpoint engine and `zero_to_fp32` call `torch.load(..., weights_only=False)`: a
pickle in a `*.pt` file of a crafted checkpoint directory can execute anything while `--resume`
or `radllm export` reads it. Two layers stop that:

1. `check_checkpoint_files` lists the globals each `*.pt` pickle refers to
   (`torch.serialization.get_unsafe_globals_in_checkpoint` reads only the pickle, no tensors)
   and refuses a file that needs anything beyond torch's weights-only set and the few plain
   DeepSpeed state classes in `DEEPSPEED_STATE_GLOBALS`, naming the file and the globals;
2. `weights_only_loading` forces every `torch.load` inside it to weights-only mode
   (`TORCH_FORCE_WEIGHTS_ONLY_LOAD`, which overrides DeepSpeed's explicit `weights_only=False`)
   with that same allow-list, so a file swapped between the check and the load is refused too.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from radllm.errors import RadllmError

#: Plain state classes DeepSpeed pickles into its checkpoint files (ZeRO stage, loss scaler,
#: fragment addresses of ZeRO-1/2 parameter slices); unpickled as data, their code never runs.
DEEPSPEED_STATE_GLOBALS = (
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
)
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _resolve(name: str) -> object:
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def check_checkpoint_files(checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint directory whose pickles need code beyond weights and DeepSpeed state.

    Raises:
        RadllmError: naming the first offending file and the globals it would import.
    """
    for path in sorted(Path(checkpoint).rglob("*.pt")):
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except (RuntimeError, OSError, ValueError, pickle.UnpicklingError, EOFError) as err:
            raise RadllmError(f"{path}: not a readable torch checkpoint file ({err})") from err
        refused = sorted(set(needed) - set(DEEPSPEED_STATE_GLOBALS))
        if refused:
            raise RadllmError(
                f"{path}: refused: its pickle imports {refused}, which a radllm/DeepSpeed checkpoint never needs "
                "(loading it could run code). Only load checkpoints written by radllm."
            )


@contextmanager
def weights_only_loading(checkpoint: str | os.PathLike) -> Iterator[None]:
    """Inside, every `torch.load` is weights-only with `DEEPSPEED_STATE_GLOBALS` allowed.

    Raises:
        RadllmError: a load inside was refused (the message names `checkpoint`).
    """
    saved = {key: os.environ.pop(key, None) for key in (FORCE_WEIGHTS_ONLY, FORCE_NO_WEIGHTS_ONLY)}
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    try:
        with torch.serialization.safe_globals([_resolve(name) for name in DEEPSPEED_STATE_GLOBALS]):
            yield
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RadllmError(f"{checkpoint}: refused to unpickle a checkpoint file in weights-only mode ({first})") from err
    finally:
        del os.environ[FORCE_WEIGHTS_ONLY]
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value


@contextmanager
def safe_checkpoint(checkpoint: str | os.PathLike) -> Iterator[None]:
    """Both layers: check the files now, then load them under `weights_only_loading`."""
    check_checkpoint_files(checkpoint)
    with weights_only_loading(checkpoint):
        yield
