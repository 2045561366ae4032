"""Where trainers keep checkpoints: `run_dir/checkpoints/step_XXXXXXX/`, listed and rotated alike.

A checkpoint directory counts as complete once it holds its trainer's marker file, the last file
that trainer writes (the LLM trainer's `COMPLETE`, the VQ-GAN's `trainer_state.json`). Resuming
takes the newest complete one; a directory without the marker (a save killed midway) is never
resumed from. How the files inside are written differs per trainer (DeepSpeed shards by every rank,
or one atomic directory swap) and stays with the trainer.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Collection
from pathlib import Path

CHECKPOINTS = "checkpoints"
STEP_PATTERN = re.compile(r"^step_(\d{7,})$")


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    """The directory holding a run's step directories."""
    return Path(run_dir) / CHECKPOINTS


def tag_for(step: int) -> str:
    """Name of the step directory of optimizer step `step` (zero-padded, so names sort like steps)."""
    return f"step_{step:07d}"


def step_of(path: Path) -> int | None:
    """The step a `step_XXXXXXX` directory name stands for; None for any other name (temporary, `latest`, ...)."""
    match = STEP_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


def step_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Every step directory of a run, complete or not, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(step, path) for path in root.iterdir() if path.is_dir() and (step := step_of(path)) is not None]
    return [path for _, path in sorted(found)]


def complete_checkpoints(run_dir: str | os.PathLike, marker: str) -> list[Path]:
    """Step directories that hold `marker` (complete saves), oldest first."""
    return [path for path in step_dirs(run_dir) if (path / marker).is_file()]


def rotate(run_dir: str | os.PathLike, keep: int, marker: str, protect: Collection[Path] = ()) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints, and any incomplete one older than the newest.

    An incomplete directory newer than the newest complete one is left alone: it may be a save
    still in progress. A `protect`ed directory (the best checkpoint) is never deleted. Returns the
    deleted directories.
    """
    complete = complete_checkpoints(run_dir, marker)
    if not complete:
        return []
    newest = step_of(complete[-1])
    doomed = complete[:-keep] if keep < len(complete) else []
    doomed += [path for path in step_dirs(run_dir) if not (path / marker).is_file() and step_of(path) < newest]
    kept = {Path(path).name for path in protect}
    doomed = [path for path in doomed if path.name not in kept]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
