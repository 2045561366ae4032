"""DeepSpeed's CPU comm op: stale build locks are cleared, live ones awaited with a clear error, and
no launch leaves its shared-memory segments behind (radllm.training.comm_op)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launching import run_group
from training_fixtures import REPO, make_training_artifacts, write_train_config

from radllm.errors import RadllmError
from radllm.training.comm_op import SHM_OP_NAME, build_shm_op, lock_holders, lock_timeout_s, wait_for_build_lock

HOLD = "import os, sys, time; fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL); print('held', flush=True); time.sleep(600)"


def _hold(lock: Path) -> subprocess.Popen:
    """A process that takes the lock the way torch's FileBaton does and keeps it open."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_no_process_holds_is_removed_at_once(tmp_path):
    (tmp_path / "lock").touch()
    start = time.monotonic()
    wait_for_build_lock(tmp_path, timeout_s=60, poll_s=0.05)
    assert not (tmp_path / "lock").exists()
    assert time.monotonic() - start < 30


def test_a_live_holder_is_awaited_then_named_in_a_clear_error(tmp_path):
    lock = tmp_path / "lock"
    holder = _hold(lock)
    try:
        assert lock_holders(lock) == [holder.pid]
        with pytest.raises(RadllmError, match=rf"{lock}.*{holder.pid}.*delete"):
            wait_for_build_lock(tmp_path, timeout_s=0.5, poll_s=0.05)
        assert lock.exists()  # a live builder's lock is never taken away
    finally:
        holder.kill()
        holder.wait()
    # Killed while holding it: now stale, so the next wait clears it.
    assert lock_holders(lock) == []
    wait_for_build_lock(tmp_path, timeout_s=60, poll_s=0.05)
    assert not lock.exists()


def test_a_holder_that_finishes_in_time_lets_the_wait_return(tmp_path):
    lock = tmp_path / "lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD.replace("time.sleep(600)", "time.sleep(1); os.remove(sys.argv[1])"), str(lock)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    wait_for_build_lock(tmp_path, timeout_s=60, poll_s=0.05)
    assert holder.wait(timeout=60) == 0  # its own release found the file it made: nothing removed it early


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "nan"])
def test_the_lock_timeout_must_be_a_positive_number(monkeypatch, raw):
    monkeypatch.setenv("RADLLM_OP_LOCK_TIMEOUT", raw)
    with pytest.raises(RadllmError, match=rf"RADLLM_OP_LOCK_TIMEOUT={raw!r}: expected a positive number"):
        lock_timeout_s()


@pytest.mark.slow
def test_a_launch_after_a_killed_one_clears_its_stale_lock_and_leaves_no_shm_segment(tmp_path):
    """A copy of the installed op with the lock a killed launch leaves: the 2-rank run must neither
    hang nor rebuild, and its /dev/shm segments must be gone afterwards."""
    built = build_shm_op()
    if built is None:
        pytest.skip("this DeepSpeed accelerator has no CPU comm op")
    extensions = tmp_path / "extensions"
    shutil.copytree(built, extensions / SHM_OP_NAME)
    (extensions / SHM_OP_NAME / "lock").touch()
    art = make_training_artifacts(tmp_path / "art")
    config = write_train_config(tmp_path / "run.yaml", art, tmp_path / "run",
                                schedule={"max_steps": 1, "log_every": 1, "eval_every": 1, "save_every": 1})
    port = 29900 + os.getpid() % 90
    env = os.environ | {"DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                        "TORCH_EXTENSIONS_DIR": str(extensions), "RADLLM_OP_LOCK_TIMEOUT": "120"}
    cmd = [Path(sys.executable).parent / "deepspeed", "--num_accelerators", "2", "--master_port", str(port),
           REPO / "radllm" / "train.py", "--config", config, "--no-progress"]
    result = run_group(cmd, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "removed a stale build lock" in result.stdout + result.stderr
    assert not (extensions / SHM_OP_NAME / "lock").exists()
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))
