"""Run a multi-process command (the deepspeed launcher, `make demo`) from a test, bounded in time.

`subprocess.run(..., timeout=...)` kills only the launcher on a timeout: its ranks live on holding
the output pipes, and the test fails with pytest-timeout's stack of the test process and nothing
of what the ranks printed. Here the command gets its own process group, a timeout kills the whole
group, and the failure shows the tail of its output.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

#: Below the suite's pytest-timeout (900 s) so this message, not a bare stack, reports a hang.
DEFAULT_TIMEOUT_S = 780


def run_group(cmd: Sequence[str], *, env: dict[str, str], cwd: str | Path | None = None,
              timeout: float = DEFAULT_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run `cmd` to completion with captured text output; on timeout kill its process group and fail."""
    proc = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{cmd[0]} ... still running after {timeout:.0f} s, killed with its process group.\n"
                    f"--- stdout tail ---\n{stdout[-4000:]}\n--- stderr tail ---\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
