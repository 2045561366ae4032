"""The end of a run whose updates keep coming out NaN/inf, shared by the LLM trainer and the VQ-GAN.

A trainer skips an update whose loss or gradient norm is not finite (the weights stay as they
were) and counts the skips in a row in its checkpointed state; one applied update resets the count.
A few skips are a bad batch; `schedule.max_nonfinite_steps` in a row mean the run has diverged and
will not recover by itself, so it stops with the error below while its last checkpoint is still
from before the trouble.
"""

from __future__ import annotations

from radllm.errors import RadllmError


def check_nonfinite_streak(in_row: int, limit: int, step: int, what: str, advice: str) -> None:
    """Stop the run once `limit` updates in a row were skipped.

    Args:
        in_row: updates skipped in a row, the current one included.
        limit: `schedule.max_nonfinite_steps`.
        step: the trainer's step number of the current update (for the message).
        what: what was non-finite ("gradient", "loss or gradient").
        advice: what to try besides a lower learning rate (which data to check, where to resume from).

    Raises:
        RadllmError: `in_row >= limit`.
    """
    if in_row >= limit:
        raise RadllmError(
            f"{in_row} consecutive steps with a non-finite {what} (last at step {step}, schedule.max_nonfinite_steps = {limit}); "
            f"lower optim.lr, {advice}"
        )
