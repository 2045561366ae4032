"""Training checkpoints: DeepSpeed's sharded state plus radllm's per-rank state, complete or ignored.

Layout of `run_dir/checkpoints/`:

    step_0000200/            `engine.save_checkpoint(tag=...)`: model/optimizer shards of every rank
    step_0000200/trainer_rank{r}.json   rank r's client state: step, tokens seen, the position
                             of each data stream it trains on (reader + rows packed but not yet
                             trained on), RNG states (`radllm.recipe.rng`), stage, world size,
                             streams, config fingerprint
    step_0000200/universal/  made on demand when a run resumes on another number of ranks:
                             DeepSpeed's world-size independent form (`radllm.training.universal`)
    step_0000200/COMPLETE    written by rank 0 after a barrier that every rank reaches only once
                             its files are on disk
    latest                   the newest complete tag (DeepSpeed's own convention, so
                             `zero_to_fp32.py` finds it), replaced atomically after COMPLETE
    best -> step_0000200     with `schedule.keep_best`: a link to the checkpoint of the best
    best.json                evaluation so far and why (metric, value, mode, step); rotation
                             never deletes it; `radllm export --checkpoint .../checkpoints/best`

    abandoned/step_0001000/  checkpoints of a run that was rolled back (see below), kept, never
                             picked by `--resume auto` or deleted by rotation

A save killed midway leaves a directory without COMPLETE: `--resume auto` never picks it (it
takes the newest directory that has the marker) and rotation deletes it. Per-rank JSON is used
because DeepSpeed stores `client_state` from the data-parallel rank 0 only, while the reader
position and pending rows differ per rank.

Rollback: a run saves increasing steps, so when a run resumed from an older checkpoint (say
step_500, with step_1000 on disk) saves step T, every checkpoint above T, and an existing
step T itself, belongs to the discarded trajectory. `prepare_save` moves them to `abandoned/`
before the new files are written: the new tag never carries an old COMPLETE marker while its
files are rewritten, `--resume auto` continues the current lineage, and rotation counts only it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radllm import atomic
from radllm.errors import RadllmError
from radllm.jsonl import read_json_file
from radllm.recipe import checkpoint_dirs

COMPLETE = "COMPLETE"
LATEST = "latest"
ABANDONED = "abandoned"
BEST = "best"


def rank_state_path(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"trainer_rank{rank}.json"


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE).is_file()


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories (holding the `COMPLETE` marker), oldest first."""
    return checkpoint_dirs.complete_checkpoints(run_dir, COMPLETE)


def resolve_resume(run_dir: str | os.PathLike, resume: str) -> Path | None:
    """The checkpoint to load: None for `never` (or `auto` with none complete), else a complete directory.

    Raises:
        RadllmError: an explicit path that is not a complete checkpoint.
    """
    if resume == "never":
        return None
    if resume == "auto":
        found = complete_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path.is_dir() and is_complete(path)):
        raise RadllmError(f"--resume {resume}: not a complete checkpoint directory (it needs the {COMPLETE} marker written at the end of a save)")
    return path


def prepare_save(run_dir: str | os.PathLike, step: int) -> list[Path]:
    """Rank 0, before any rank writes the step directory of `step`: clear the way (see the module docstring).

    An incomplete directory of this tag or a later one (a killed save) is deleted; a complete one
    (a rolled-back trajectory) is moved to `abandoned/`. Returns the moved checkpoints' new paths.
    """
    root = checkpoint_dirs.checkpoints_dir(run_dir)
    moved = []
    for path in checkpoint_dirs.step_dirs(run_dir):
        if checkpoint_dirs.step_of(path) < step:
            continue
        if not is_complete(path):
            shutil.rmtree(path)
            continue
        target = root / ABANDONED / path.name
        copy = 1
        while target.exists():
            target, copy = root / ABANDONED / f"{path.name}.{copy}", copy + 1
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
        moved.append(target)
    return moved


def mark_complete(checkpoint: Path) -> None:
    """Rank 0, after every rank finished writing: the marker, then `latest`."""
    atomic.write_text(checkpoint / COMPLETE, "")
    atomic.write_text(checkpoint.parent / LATEST, checkpoint.name)


def size_bytes(checkpoint: Path) -> int:
    """Bytes on disk under a checkpoint directory (every rank's shards)."""
    return sum(path.stat().st_size for path in checkpoint.rglob("*") if path.is_file())


def rotate(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints and any incomplete one older than the newest; returns deleted dirs.

    Abandoned checkpoints (a subdirectory) are never counted or deleted, nor is the best one.
    """
    best = best_checkpoint(run_dir)
    return checkpoint_dirs.rotate(run_dir, keep, COMPLETE, protect=[best] if best else [])


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The step directory `checkpoints/best` links to, or None (no link, or a link to nothing)."""
    link = checkpoint_dirs.checkpoints_dir(run_dir) / BEST
    if not link.is_symlink():
        return None
    target = link.parent / os.readlink(link)
    return target if target.is_dir() else None


def mark_best(checkpoint: Path, record: dict[str, Any]) -> None:
    """Rank 0: point `checkpoints/best` at a complete `checkpoint` (replaced atomically) and write `best.json`."""
    link = checkpoint.parent / BEST
    staged = checkpoint.parent / f".{BEST}.{os.getpid()}"
    staged.unlink(missing_ok=True)
    os.symlink(checkpoint.name, staged)  # relative: the run directory can move
    os.replace(staged, link)
    atomic.write_json(checkpoint.parent / f"{BEST}.json", {"checkpoint": checkpoint.name, **record})


def resolve_link(checkpoint: Path) -> Path:
    """A checkpoint path with a link in its last component (`checkpoints/best`) replaced by the step directory it names."""
    return checkpoint.parent / os.readlink(checkpoint) if checkpoint.is_symlink() else checkpoint


def write_rank_state(checkpoint: Path, rank: int, state: dict[str, Any]) -> None:
    atomic.write_json(rank_state_path(checkpoint, rank), state)


@dataclass(frozen=True)
class Layout:
    """How a checkpoint's run was laid out: its number of ranks and of data streams."""

    world_size: int
    streams: int


def _state_file(checkpoint: Path, rank: int, fingerprint: str) -> dict[str, Any]:
    """Rank `rank`'s state file, after checking it belongs to this run's trajectory (the run config's `fingerprint()`).

    Raises:
        RadllmError: missing file, or a config that changes the trajectory.
    """
    path = rank_state_path(checkpoint, rank)
    if not path.is_file():
        raise RadllmError(f"{checkpoint}: no {path.name}; the checkpoint is incomplete or not a radllm checkpoint")
    state = read_json_file(path)
    if state["config_fingerprint"] != fingerprint:
        raise RadllmError(
            f"{checkpoint}: written with a different model/data/tasks/optim/anchor config (fingerprint "
            f"{state['config_fingerprint']} vs {fingerprint}); compare with {checkpoint.parent.parent / 'config.yaml'}"
        )
    return state


def saved_layout(checkpoint: Path, fingerprint: str) -> Layout:
    """The layout `checkpoint` was written with (checkpoints from before data streams: one per rank)."""
    state = _state_file(checkpoint, 0, fingerprint)
    return Layout(int(state["world_size"]), int(state.get("streams", state["world_size"])))


def read_resume_state(checkpoint: Path, fingerprint: str, rank: int, owned: list[int]) -> dict[str, Any]:
    """What rank `rank` restores from a checkpoint written by any number of ranks.

    Stream s was saved by rank s mod W of the W ranks that wrote the checkpoint, so its position
    is read from that rank's file whatever the world size is now. The counters are the same on
    every rank (rank 0's are taken); the RNG state is this rank's own when that rank existed,
    else None (the rank keeps its seeded generators: nothing in the trajectory draws from them).

    Returns:
        {"train": TrainState fields, "rng": `radllm.recipe.rng.rng_state()` or None, "data": {stream: its state}}.
    """
    layout = saved_layout(checkpoint, fingerprint)
    files: dict[int, dict[str, Any]] = {}

    def state_of(saved_rank: int) -> dict[str, Any]:
        if saved_rank not in files:
            files[saved_rank] = _state_file(checkpoint, saved_rank, fingerprint)
        return files[saved_rank]

    data = {}
    for stream in owned:
        saved = state_of(stream % layout.world_size)["data"]
        data[stream] = saved["streams"][str(stream)] if "streams" in saved else saved  # before streams: the rank's one stream
    own = state_of(rank)["rng"] if rank < layout.world_size else None
    return {"train": state_of(0)["train"], "rng": own, "data": data}
