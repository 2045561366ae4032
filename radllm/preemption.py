"""Pre-emption: however a job is told to stop, its ranks checkpoint at the next step boundary and exit 75.

Clusters deliver a stop in several ways, and DeepSpeed 0.19's launchers pass none of them on as a
trainer needs:

* slurm signals a job before it takes the nodes away: SIGUSR1 ahead of time where the job asks for
  it (`#SBATCH --signal=B:USR1@300`, forwarded to the ranks by `scripts/slurm/train.sbatch`), and
  SIGTERM to *every* process of the job at the time limit or on `scancel` (SIGKILL after its
  KillWait, 30 s by default): the launchers, the ranks and their data-loader workers at once;
* a container stop, a terminal's Ctrl-C or a scheduler signals the process it started, the
  `deepspeed` runner, which for a local launch has no handler and dies at once, leaving the
  per-node launcher and the ranks running without it;
* the per-node launcher (`deepspeed.launcher.launch`) answers SIGTERM by sending SIGTERM to every
  descendant (ranks *and* data-loader workers), waiting 30 s, then SIGKILL.

So a rank defends itself, whoever is signalled:

* `StopRequest` records SIGTERM, SIGUSR1 or SIGINT (a second SIGINT interrupts at once, as a user
  pressing Ctrl-C twice expects) and reports it `pending`; it also reports pending once a process
  that launched this rank has exited (`LauncherWatch`: the per-node launcher and the runner above
  it), and asks the kernel to send SIGUSR1 should the direct parent die (Linux), so no rank
  outlives its launcher;
* data-loader workers ignore the job's signals (`ignore_job_signals`, their `worker_init_fn`), so
  they are still there when their rank writes its checkpoint; they exit when their rank does;
* the trainer adds `pending` to the all-reduce every step already makes, so all ranks learn at the
  same step boundary that one of them was asked to stop, save a checkpoint of that step together,
  and leave with `PREEMPTED_EXIT_CODE`, which the batch script answers with `scontrol requeue`.
  The requeued job resumes with `--resume auto` and repeats nothing: the checkpoint holds the step,
  the reader position and the RNG states.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import sys
from types import FrameType

import psutil

log = logging.getLogger(__name__)

#: Signals that request a checkpoint and a clean exit.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
#: Signals a data-loader worker ignores: its rank decides when the job ends.
JOB_SIGNALS = (*PREEMPTION_SIGNALS, signal.SIGHUP)
#: EX_TEMPFAIL ("try again later"): the run stopped early on purpose and wants to be requeued.
PREEMPTED_EXIT_CODE = 75
#: Words in a command line that mark a process as a launcher of ranks (deepspeed's runner and
#: per-node launcher, torchrun, `radllm launch`).
LAUNCHER_MARKS = ("deepspeed", "torch.distributed.run", "torchrun", "radllm launch", "radllm.launcher")
#: DeepSpeed's per-node launcher, started by its runner (or by srun under slurm).
PER_NODE_LAUNCHER = "deepspeed.launcher.launch"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class JobStopped(Exception):
    """A job stopped at a clean boundary on a stop request: what it wrote is complete and kept, and
    the same command continues it. Entry points exit with `PREEMPTED_EXIT_CODE`."""


class Preempted(JobStopped):
    """Raised by the trainer after the checkpoint of a signalled step is complete on every rank."""

    def __init__(self, step: int, checkpoint: str, reason: str = "a pre-emption signal") -> None:
        super().__init__(f"pre-empted by {reason}: checkpoint {checkpoint} of step {step} saved; "
                         "requeue and resume with --resume auto")
        self.step, self.checkpoint = step, checkpoint


def ignore_job_signals(worker_id: int | None = None) -> None:
    """`worker_init_fn` of data-loader workers: ignore the job's stop signals, die with the rank.

    torch's workers die of a SIGTERM that does not come from their rank, and a rank whose worker
    died fails before it can save, so they ignore it. They must not outlive their rank, though:
    a rank that exits without shutting its loader down (the end of a run with a stream still
    open) leaves workers whose parent watchdog cannot end them when their result pipe is full
    (the queue's feeder thread blocks on it and the exit waits for that thread), and the SIGTERM
    Python's exit sends daemonic children is now ignored. Such an orphan kept the rendezvous
    port it inherited and failed the next launch on that port (EADDRINUSE). So the kernel kills
    each worker when its rank exits (PR_SET_PDEATHSIG with SIGKILL, which cannot be ignored).
    """
    for signum in JOB_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    kernel_signals_parent_death(signal.SIGKILL)


class LauncherWatch:
    """The processes that launched this rank, to notice when one has exited.

    The ancestors are walked up from the parent while their command line names a launcher
    (`LAUNCHER_MARKS`), up to the first that is not DeepSpeed's per-node launcher: for
    `deepspeed train.py` the per-node launcher and the runner; for a rank started by hand, none.
    A process counts as gone when it has exited (also while it is a zombie its parent has not
    reaped) or its pid now names another process (psutil compares creation times).
    """

    def __init__(self, launchers: list[psutil.Process]) -> None:
        self.launchers = launchers

    @classmethod
    def of_this_process(cls) -> "LauncherWatch":
        launchers = []
        try:
            process = psutil.Process().parent()
            while process is not None:
                command = " ".join(process.cmdline())
                if not any(mark in command for mark in LAUNCHER_MARKS):
                    break
                launchers.append(process)
                if PER_NODE_LAUNCHER not in command:
                    break  # the top launcher: what started it is not ours to watch
                process = process.parent()
        except psutil.Error:  # an ancestor exited while we looked, or is not ours to read: watch what we have
            pass
        return cls(launchers)

    def gone(self) -> psutil.Process | None:
        """The first launcher that has exited (a zombie its parent has not reaped yet included), or None."""
        for process in self.launchers:
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    return process
            except psutil.NoSuchProcess:
                return process
        return None


def kernel_signals_parent_death(signum: int) -> bool:
    """Ask Linux to send `signum` to this process when its parent exits (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0


class StopRequest:
    """Whether this rank has been asked to stop: a recorded signal, or a launcher that has exited.

    Handlers only set a field; `pending` is read at each step boundary.
    """

    def __init__(self, watch: LauncherWatch | None = None) -> None:
        self.signal: int | None = None
        self.watch = watch or LauncherWatch([])
        self._launcher_gone: str | None = None

    def install(self) -> None:
        """Handle the pre-emption signals in this process and watch its launchers."""
        for signum in PREEMPTION_SIGNALS:
            signal.signal(signum, self._record)
        self.watch = LauncherWatch.of_this_process()
        if self.watch.launchers:
            kernel_signals_parent_death(signal.SIGUSR1)
            log.info("watching the launchers of this rank: %s", ", ".join(f"pid {p.pid}" for p in self.watch.launchers))

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        if self.signal is None:
            self.signal = signum

    @property
    def pending(self) -> bool:
        if self.signal is None and self._launcher_gone is None:
            gone = self.watch.gone()
            if gone is not None:
                self._launcher_gone = f"the exit of its launcher (pid {gone.pid})"
        return self.signal is not None or self._launcher_gone is not None

    @property
    def reason(self) -> str:
        """What asked for the stop, for the exit message."""
        if self.signal is not None:
            return signal.Signals(self.signal).name
        return self._launcher_gone or "the stop request of another rank"
