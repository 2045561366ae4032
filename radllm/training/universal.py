"""Resuming on another number of ranks: DeepSpeed's universal checkpoint, made on demand.

A ZeRO checkpoint holds each rank's slice of the optimizer state (and, under ZeRO-3, of the
weights), cut for the world size that wrote it. A requeued job that gets fewer or more nodes
cannot load those slices directly. DeepSpeed's `ds_to_universal` merges them into one file per
parameter (fp32 weights, Adam moments) that any world size can load with
`"checkpoint": {"load_universal": true}`.

`universal_checkpoint` converts `step_N/` into `step_N/universal/` once (rank 0; the others wait
at a barrier), under `safe_checkpoint` so the conversion unpickles nothing but weights and plain
DeepSpeed state, and writes to a temporary folder renamed into place, so a conversion killed
midway is redone rather than loaded. It lives inside the tag, so rotation and rollback handle it
with its checkpoint. radllm's own per-rank state (counters, data streams) is world-size
independent already (`checkpoint.read_resume_state`).

DeepSpeed's ZeRO-3 universal load (0.19) leaves the optimizer subtly wrong, so
`repair_after_universal_load` undoes two of its effects: it gives every parameter group the first
group's settings (the norms would get the matrices' weight decay), and it hands one `step` tensor
to every parameter group, which AdamW then increments once per group and step (the second
group's bias correction runs ahead). A 2-rank run resumed on one rank matches the uninterrupted
run only with both repaired (tests/test_training_zero3.py).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from radllm.training.safe_checkpoint import safe_checkpoint

log = logging.getLogger(__name__)

UNIVERSAL_TAG = "universal"


def universal_dir(checkpoint: Path) -> Path:
    return checkpoint / UNIVERSAL_TAG


def convert_to_universal(checkpoint: Path) -> Path:
    """`checkpoint/universal/` (made now unless a finished conversion is there); returns it."""
    from deepspeed.checkpoint import ds_to_universal

    target = universal_dir(checkpoint)
    if target.is_dir():
        return target
    partial = checkpoint / f"{UNIVERSAL_TAG}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    args = argparse.Namespace(
        input_folder=str(checkpoint), output_folder=str(partial), num_extract_workers=1, num_merge_workers=1,
        keep_temp_folder=False, strict=True, inject_missing_state=False,
    )
    log.info("converting %s to a universal checkpoint (resuming on another number of ranks)", checkpoint)
    with safe_checkpoint(checkpoint):
        ds_to_universal.main(args)
    (checkpoint / "latest_universal").unlink(missing_ok=True)  # DeepSpeed's pointer file; radllm names the tag itself
    partial.rename(target)
    return target


def universal_checkpoint(checkpoint: Path, rank: int) -> Path:
    """The universal form of `checkpoint`, converted by rank 0 while the other ranks wait."""
    import deepspeed.comm as dist

    if rank == 0:
        convert_to_universal(checkpoint)
    dist.barrier()
    return universal_dir(checkpoint)


def optimizer_settings(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's settings (weight decay, betas, ...), to restore after a universal load."""
    return [{k: v for k, v in group.items() if k not in ("params", "lr")} for group in optimizer.param_groups]


def repair_after_universal_load(optimizer: torch.optim.Optimizer, settings: list[dict[str, Any]]) -> None:
    """Put back each group's own `settings` and give every parameter state its own `step` tensor.

    `optimizer` is the torch optimizer inside DeepSpeed's (`engine.optimizer.optimizer` under ZeRO).
    """
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)
    for state in optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].clone()
