"""One writer per run directory: an exclusive lock that a training job holds for its lifetime.

A pre-empted job's launcher can outlive the signal by minutes (its ranks are saving), and a user or
a requeue may start `--resume auto` on the same run directory meanwhile: two jobs would then write
one run's checkpoints and metrics. Rank 0 takes `fcntl.flock` on ``run_dir/.radllm-lock`` before
anything is written and keeps it until the process ends. The kernel drops a flock when its holder
exits in any way, SIGKILL included, so a dead job never leaves a stale lock behind (a lock *file*
with a pid in it would). The file records who holds it, for the error a second job gets. flock
works across the nodes of NFSv4 and Lustre (mounted with ``flock``) file systems.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from radllm.errors import RadllmError

LOCK_NAME = ".radllm-lock"


class RunLock:
    """The held lock of one run directory; `release` (or the process's exit) lets it go."""

    def __init__(self, path: Path, handle: int) -> None:
        self.path, self._handle = path, handle

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike) -> "RunLock":
        """Lock `run_dir` for this process, creating the directory if needed.

        Raises:
            RadllmError: a live process holds it (named with its host, pid and slurm job, when known).
        """
        path = Path(run_dir) / LOCK_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 4096).decode("utf-8", "replace").strip() or "unknown"
            os.close(handle)
            raise RadllmError(
                f"run_dir {path.parent} is in use by a live training job ({holder}); two jobs would write one run's "
                "checkpoints. Wait for it to end (a pre-empted job is still saving), stop it, or choose another run_dir"
            ) from None
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                     "slurm_job": os.environ.get("SLURM_JOB_ID")}).encode())
        return cls(path, handle)

    def release(self) -> None:
        if self._handle >= 0:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = -1
