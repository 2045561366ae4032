"""Training checkpoints: DeepSpeed's sharded state plus radllm's per-rank state, complete or ignored.

Layout of `run_dir/checkpoints/`:

    step_0000200/            `engine.save_checkpoint(tag=...)`: model/optimizer shards of every rank
    step_0000200/trainer_rank{r}.json   rank r's client state: step, tokens seen, the position
                             of each data stream it trains on (reader + rows packed but not yet
                             trained on), RNG states, stage, world size, streams, config fingerprint
    step_0000200/universal/  made on demand when a run resumes on another number of ranks:
                             DeepSpeed's world-size independent form (`radllm.training.universal`)
    step_0000200/COMPLETE    written by rank 0 after a barrier that every rank reaches only once
                             its files are on disk
    latest                   the newest complete tag (DeepSpeed's own convention, so
                             `zero_to_fp32.py` finds it), replaced atomically after COMPLETE

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

import base64
import hashlib
import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radllm import atomic
from radllm.config import config_to_dict
from radllm.errors import RadllmError
from radllm.jsonl import read_json_file
from radllm.training.config import TrainConfig

COMPLETE = "COMPLETE"
LATEST = "latest"
ABANDONED = "abandoned"
TAG_PATTERN = re.compile(r"^step_(\d{7,})$")


def tag_for(step: int) -> str:
    return f"step_{step:07d}"


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def rank_state_path(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"trainer_rank{rank}.json"


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE).is_file()


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := TAG_PATTERN.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


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
    """Rank 0, before any rank writes `tag_for(step)`: clear the way (see the module docstring).

    An incomplete directory of this tag or a later one (a killed save) is deleted; a complete one
    (a rolled-back trajectory) is moved to `abandoned/`. Returns the moved checkpoints' new paths.
    """
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    moved = []
    for path in sorted(root.iterdir()):
        match = TAG_PATTERN.match(path.name)
        if not (path.is_dir() and match and int(match.group(1)) >= step):
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


def rotate(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints and any incomplete one older than the newest; returns deleted dirs."""
    complete = complete_checkpoints(run_dir)
    if not complete:
        return []
    newest = int(TAG_PATTERN.match(complete[-1].name).group(1))
    doomed = complete[:-keep] if keep < len(complete) else []
    for path in checkpoints_dir(run_dir).iterdir():
        match = TAG_PATTERN.match(path.name)
        if path.is_dir() and match and not is_complete(path) and int(match.group(1)) < newest:
            doomed.append(path)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def config_fingerprint(config: TrainConfig) -> str:
    """Hash of what defines the training trajectory (not schedule lengths, logging or paths of outputs)."""
    data = config_to_dict(config)
    for key in ("run_dir", "export_dir", "resume", "schedule", "logging", "deepspeed"):
        data.pop(key, None)
    data["data"].pop("num_workers", None)
    data["data"].pop("streams", None)  # checked against the checkpoint's layout instead (saved_layout)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states as JSON-friendly values."""
    state: dict[str, Any] = {
        "python": _encode(random.getstate()),
        "numpy": _encode(np.random.get_state()),
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }
    if torch.cuda.is_available():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_decode_python(state["python"]))
    np.random.set_state(_decode_numpy(state["numpy"]))
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["cuda"])), dtype=torch.uint8))


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def _decode_python(value: list) -> tuple:
    return (value[0], tuple(value[1]), value[2])


def _decode_numpy(value: list) -> tuple:
    return (value[0], np.asarray(value[1]["ndarray"], dtype=value[1]["dtype"]), *value[2:])


def write_rank_state(checkpoint: Path, rank: int, state: dict[str, Any]) -> None:
    atomic.write_json(rank_state_path(checkpoint, rank), state)


@dataclass(frozen=True)
class Layout:
    """How a checkpoint's run was laid out: its number of ranks and of data streams."""

    world_size: int
    streams: int


def _state_file(checkpoint: Path, rank: int, config: TrainConfig) -> dict[str, Any]:
    """Rank `rank`'s state file, after checking it belongs to this run's trajectory.

    Raises:
        RadllmError: missing file, or a config that changes the trajectory.
    """
    path = rank_state_path(checkpoint, rank)
    if not path.is_file():
        raise RadllmError(f"{checkpoint}: no {path.name}; the checkpoint is incomplete or not a radllm checkpoint")
    state = read_json_file(path)
    if state["config_fingerprint"] != config_fingerprint(config):
        raise RadllmError(
            f"{checkpoint}: written with a different model/data/tasks/optim/anchor config (fingerprint "
            f"{state['config_fingerprint']} vs {config_fingerprint(config)}); compare with {checkpoint.parent.parent / 'config.yaml'}"
        )
    return state


def saved_layout(checkpoint: Path, config: TrainConfig) -> Layout:
    """The layout `checkpoint` was written with (checkpoints from before data streams: one per rank)."""
    state = _state_file(checkpoint, 0, config)
    return Layout(int(state["world_size"]), int(state.get("streams", state["world_size"])))


def read_resume_state(checkpoint: Path, config: TrainConfig, rank: int, owned: list[int]) -> dict[str, Any]:
    """What rank `rank` restores from a checkpoint written by any number of ranks.

    Stream s was saved by rank s mod W of the W ranks that wrote the checkpoint, so its position
    is read from that rank's file whatever the world size is now. The counters are the same on
    every rank (rank 0's are taken); the RNG state is this rank's own when that rank existed,
    else None (the rank keeps its seeded generators: nothing in the trajectory draws from them).

    Returns:
        {"train": TrainState fields, "rng": rng_state() or None, "data": {stream: its state}}.
    """
    layout = saved_layout(checkpoint, config)
    files: dict[int, dict[str, Any]] = {}

    def state_of(saved_rank: int) -> dict[str, Any]:
        if saved_rank not in files:
            files[saved_rank] = _state_file(checkpoint, saved_rank, config)
        return files[saved_rank]

    data = {}
    for stream in owned:
        saved = state_of(stream % layout.world_size)["data"]
        data[stream] = saved["streams"][str(stream)] if "streams" in saved else saved  # before streams: the rank's one stream
    own = state_of(rank)["rng"] if rank < layout.world_size else None
    return {"train": state_of(0)["train"], "rng": own, "data": data}
