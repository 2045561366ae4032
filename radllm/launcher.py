"""`radllm launch`: start a job's ranks on this node, and see the job through a stop with exit code 75.

    radllm launch --nproc-per-node 2 -- radllm train --config configs/demo/stage2.yaml --resume auto
    srun radllm launch --nnodes 4 --node-rank $SLURM_NODEID --master-addr HOST --nproc-per-node 8 -- radllm train ...

The ranks get the environment torch and DeepSpeed read (RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and DeepSpeed's CROSS_RANK, CROSS_SIZE, LOCAL_SIZE),
so `deepspeed.init_distributed` joins them as under DeepSpeed's own launcher. What differs is the
stop. DeepSpeed 0.19's runner dies at once on SIGTERM for a local launch, and its per-node
launcher answers SIGTERM by terminating every descendant, SIGKILL after 30 s, then exits 1: the
pre-emption exit code of the ranks (`radllm.preemption.PREEMPTED_EXIT_CODE`) never reaches the
batch script that should requeue the job. This launcher, whichever of its processes the signal
reaches (it alone, the ranks alone, or the whole process group as slurm's scancel and a terminal's
Ctrl-C deliver it):

* passes SIGTERM, SIGINT, SIGUSR1 or SIGHUP on to every rank as SIGUSR1 (a stop request: the
  ranks agree on a step boundary, save, exit 75) and keeps waiting, with no deadline of its own:
  the scheduler's KillWait is the deadline;
* a second SIGINT is passed on as SIGINT (the ranks' own second Ctrl-C: stop without saving);
* when a rank fails (exit status other than 0 and 75), stops the others (SIGUSR1, then SIGKILL
  of their process trees after `grace_s`: a collective with a dead peer never returns);
* exits 75 when the ranks were pre-empted (or, asked to stop while still loading, died of the
  signal: nothing was trained since the last checkpoint), else the first failure's status, else 0;
* makes the kernel send SIGTERM to a rank whose launcher dies before the rank watches it itself.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

import psutil

from radllm.errors import RadllmError
from radllm.preemption import PREEMPTED_EXIT_CODE, PREEMPTION_SIGNALS, kernel_signals_parent_death

log = logging.getLogger(__name__)

#: Signals the launcher answers by asking the ranks to stop.
STOP_SIGNALS = (*PREEMPTION_SIGNALS, signal.SIGHUP)
POLL_S = 0.2


@dataclass(frozen=True)
class LaunchPlan:
    """Where this node's ranks sit in the job, and what they run."""

    command: Sequence[str]
    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    def validate(self) -> "LaunchPlan":
        """Raise RadllmError naming the first bad field."""
        if not self.command:
            raise RadllmError("radllm launch: no command to run (give it after --, e.g. -- radllm train --config C)")
        for name, value in (("nproc_per_node", self.nproc_per_node), ("nnodes", self.nnodes)):
            if value < 1:
                raise RadllmError(f"radllm launch: --{name.replace('_', '-')} {value}; expected a positive integer")
        if not 0 <= self.node_rank < self.nnodes:
            raise RadllmError(f"radllm launch: --node-rank {self.node_rank}; expected 0..{self.nnodes - 1} for --nnodes {self.nnodes}")
        if not 0 < self.master_port < 65536:
            raise RadllmError(f"radllm launch: --master-port {self.master_port}; expected a TCP port")
        return self

    def rank_environment(self, local_rank: int, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of local rank `local_rank` (on top of `base`, default this process's)."""
        env = dict(os.environ if base is None else base)
        env.update({
            "RANK": str(self.node_rank * self.nproc_per_node + local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(self.nnodes * self.nproc_per_node),
            "LOCAL_WORLD_SIZE": str(self.nproc_per_node),
            "LOCAL_SIZE": str(self.nproc_per_node),  # DeepSpeed's names
            "CROSS_RANK": str(self.node_rank),
            "CROSS_SIZE": str(self.nnodes),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "PYTHONUNBUFFERED": "1",
        })
        return env


class _Job:
    """The rank processes of this node and the stop requests passed on to them."""

    def __init__(self) -> None:
        self.ranks: list[subprocess.Popen] = []
        self.stop_signal: int | None = None

    def start(self, plan: LaunchPlan) -> None:
        """Spawn the ranks (unless a stop came first: then there is nothing to start)."""
        for local_rank in range(plan.nproc_per_node):
            if self.stop_signal is None:
                self.ranks.append(subprocess.Popen(list(plan.command), env=plan.rank_environment(local_rank), preexec_fn=_die_with_launcher))

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        forward = signal.SIGINT if signum == signal.SIGINT and self.stop_signal == signal.SIGINT else signal.SIGUSR1
        if self.stop_signal is None:
            log.warning("radllm launch: %s received; asking the ranks to checkpoint and stop", signal.Signals(signum).name)
            self.stop_signal = signum
        self.send(forward)

    def stopped(self, status: int) -> bool:
        """Whether a rank's exit status is a normal end or a stop: done (0), pre-empted (75), or, once
        a stop was asked for, killed by the stop signal before its trainer could catch it (loading)."""
        if status in (0, PREEMPTED_EXIT_CODE):
            return True
        return self.stop_signal is not None and -status in STOP_SIGNALS

    def send(self, signum: int) -> None:
        for process in self.ranks:
            if process.poll() is None:
                try:
                    process.send_signal(signum)
                except ProcessLookupError:
                    pass

    def kill_trees(self) -> None:
        for process in self.ranks:
            if process.poll() is None:
                try:
                    tree = [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]
                except psutil.NoSuchProcess:
                    continue
                for member in tree:
                    try:
                        member.kill()
                    except psutil.NoSuchProcess:
                        pass


def _die_with_launcher() -> None:
    """In each rank before it runs: SIGTERM from the kernel should the launcher die (Linux)."""
    kernel_signals_parent_death(signal.SIGTERM)


def launch(plan: LaunchPlan, grace_s: float = 60.0) -> int:
    """Run this node's ranks of `plan` to the end; the exit status of the job on this node.

    Returns:
        75 (`PREEMPTED_EXIT_CODE`) when the ranks stopped for a pre-emption, else the exit status
        of the first rank that failed (a rank killed by signal N counts as 128 + N), else 0.
    """
    plan.validate()
    job = _Job()
    previous = {signum: signal.signal(signum, job.on_signal) for signum in STOP_SIGNALS}  # before any rank exists
    failure: int | None = None
    failed_at: float | None = None
    try:
        job.start(plan)
        while any(process.poll() is None for process in job.ranks):
            for local_rank, process in enumerate(job.ranks):
                status = process.poll()
                if status is None or job.stopped(status) or failure is not None:
                    continue
                failure = status if status >= 0 else 128 - status
                failed_at = time.monotonic()
                log.error("radllm launch: local rank %d exited with status %d; stopping the other ranks", local_rank, failure)
                job.send(signal.SIGUSR1)
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                log.error("radllm launch: ranks still running %.0f s after a failure; killing them", grace_s)
                job.kill_trees()
                failed_at = None
            time.sleep(POLL_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    statuses = [process.returncode for process in job.ranks]
    if failure is None:
        failure = next((s if s >= 0 else 128 - s for s in statuses if not job.stopped(s)), None)
    if failure is not None:
        return failure
    if job.stop_signal is not None and len(statuses) < plan.nproc_per_node:
        return PREEMPTED_EXIT_CODE  # stopped before every rank was started
    return 0 if all(status == 0 for status in statuses) else PREEMPTED_EXIT_CODE
