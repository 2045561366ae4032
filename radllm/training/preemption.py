"""Pre-emption: a signal asks for a checkpoint at the next step boundary, then a distinct exit code.

Slurm signals a job before it takes the nodes away: SIGTERM at the time limit or on `scancel`
(then SIGKILL after its KillWait, 30 s by default), and SIGUSR1 ahead of time where the job asks
for it (`#SBATCH --signal=B:USR1@300`, forwarded to the ranks by `scripts/slurm/train.sbatch`).
The deepspeed launcher also passes a SIGTERM it receives on to its ranks. A rank that gets
either signal only records it (`StopRequest`); the trainer adds the flag to the all-reduce every
step already makes, so all ranks learn at the same step boundary that one of them was signalled,
save a checkpoint of that step together, and leave with `PREEMPTED_EXIT_CODE`, which the batch
script answers with `scontrol requeue`. The requeued job resumes with `--resume auto` and
repeats nothing: the checkpoint holds the step, the reader position and the RNG states.
"""

from __future__ import annotations

import signal
from types import FrameType

#: Signals that request a checkpoint and a clean exit.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: EX_TEMPFAIL ("try again later"): the run stopped early on purpose and wants to be requeued.
PREEMPTED_EXIT_CODE = 75


class Preempted(Exception):
    """Raised by the trainer after the checkpoint of a signalled step is complete on every rank."""

    def __init__(self, step: int, checkpoint: str) -> None:
        super().__init__(f"pre-empted: checkpoint {checkpoint} of step {step} saved; requeue and resume with --resume auto")
        self.step, self.checkpoint = step, checkpoint


class StopRequest:
    """Records the first pre-emption signal this process receives (handlers only set a field)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> None:
        for signum in PREEMPTION_SIGNALS:
            signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum

    @property
    def pending(self) -> bool:
        return self.signal is not None
