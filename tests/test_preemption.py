"""Pre-emption as clusters deliver it: 2 CPU ranks with data-loader workers, under DeepSpeed's launcher
and `radllm launch`, signalled the ways a scheduler, a container runtime or a terminal signal a job.

Every case must end with a complete checkpoint of a step after the signal (the step in progress
finishes), no process of the job left behind, and a `--resume auto` whose losses equal an
uninterrupted run's from the next step on. `radllm launch` must also exit 75 (requeue); DeepSpeed's
runner cannot (it dies of the signal, or its per-node launcher exits 1 after passing SIGTERM on),
so there the ranks' own report of the checkpoint is checked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from training_fixtures import REPO, logged_train_steps, make_training_artifacts, write_train_config

from radllm.preemption import PREEMPTED_EXIT_CODE, LauncherWatch, StopRequest
from radllm.training.checkpoint import complete_checkpoints
from radllm.training.run_log import read_metrics

BIN = Path(sys.executable).parent
ENV = os.environ | {"DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
MAX_STEPS = 6


# --- units ------------------------------------------------------------------------------------------


def test_stop_request_records_signals_and_a_second_ctrl_c_interrupts() -> None:
    request = StopRequest()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        request.install()
        assert not request.pending
        os.kill(os.getpid(), signal.SIGINT)
        assert request.pending and request.reason == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_a_launcher_that_exits_is_a_stop_request() -> None:
    launcher = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        request = StopRequest(LauncherWatch([psutil.Process(launcher.pid)]))
        assert not request.pending
    finally:
        launcher.kill()
        launcher.wait()
    assert request.pending and request.reason == f"the exit of its launcher (pid {launcher.pid})"


def test_the_watch_climbs_only_through_launchers() -> None:
    """A rank under `deepspeed`'s per-node launcher under its runner watches both, and stops at the
    first process that is not a launcher (here the test process, and the runner is the top one)."""
    probe = ("from radllm.preemption import LauncherWatch; import json, os; "
             "print(json.dumps([p.pid for p in LauncherWatch.of_this_process().launchers]))")
    # python -c '<deepspeed.launcher.launch>' stands for the per-node launcher, spawned by a "deepspeed" runner
    node = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {probe!r}]) # deepspeed.launcher.launch"
    runner = f"import subprocess, sys, os; print(os.getpid()); subprocess.run([sys.executable, '-c', {node!r}]) # deepspeed"
    out = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, env=ENV, timeout=60)
    runner_pid, watched = out.stdout.splitlines()
    watched = json.loads(watched)
    assert len(watched) == 2 and watched[1] == int(runner_pid)


def test_data_loader_workers_outlive_the_jobs_signal_and_exit_with_their_process(tmp_path: Path) -> None:
    """A SIGTERM to the workers (as DeepSpeed's launcher and scancel send it) leaves the batches
    coming; once their process exits they follow within seconds (torch's parent watchdog)."""
    script = tmp_path / "loader.py"
    script.write_text(
        "import os, signal, sys, time, torch\n"
        "from torch.utils.data import DataLoader, IterableDataset\n"
        "from radllm.preemption import ignore_job_signals\n"
        "class Slow(IterableDataset):\n"
        "    def __iter__(self):\n"
        "        for i in range(40):\n"
        "            time.sleep(0.05)\n"
        "            yield i\n"
        "loader = DataLoader(Slow(), batch_size=None, num_workers=1, worker_init_fn=ignore_job_signals)\n"
        "import psutil\n"
        "seen = []\n"
        "for i, item in enumerate(loader):\n"
        "    if i == 2:\n"
        "        for worker in psutil.Process().children():\n"
        "            print('worker', worker.pid, flush=True)\n"
        "            worker.terminate()\n"
        "    seen.append(item)\n"
        "print('seen', len(seen), flush=True)\n"
        "os._exit(0)\n"  # no loader shutdown: the worker must notice its parent is gone
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    worker = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("worker")))
    assert "seen 40" in out.stdout
    assert _gone([worker], timeout=30)


def test_a_data_loader_worker_is_killed_by_the_kernel_when_its_rank_exits(tmp_path: Path) -> None:
    """Workers ignore the job's SIGTERM, so nothing but the kernel may end one whose rank left as
    radllm's commands do (`exit_now`: os._exit, no loader shutdown): an orphan worker kept the
    rendezvous port it inherited and failed the demo's next launch with EADDRINUSE. The worker
    reports its parent-death signal (prctl PR_GET_PDEATHSIG), then the rank exits mid-stream."""
    script = tmp_path / "loader.py"
    script.write_text(
        "import ctypes, os, sys, time, torch, psutil\n"
        "from torch.utils.data import DataLoader, IterableDataset\n"
        "from radllm.preemption import ignore_job_signals\n"
        "class Endless(IterableDataset):\n"
        "    def __iter__(self):\n"
        "        value = ctypes.c_int(0)\n"
        "        ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)\n"  # PR_GET_PDEATHSIG
        "        yield value.value\n"
        "        while True:\n"
        "            yield torch.zeros(1 << 18)\n"  # 1 MB items: the result pipe fills
        "items = iter(DataLoader(Endless(), batch_size=None, num_workers=1, worker_init_fn=ignore_job_signals, prefetch_factor=8))\n"
        "print('pdeathsig', next(items), flush=True)\n"
        "next(items); time.sleep(2)\n"
        "print('worker', psutil.Process().children()[0].pid, flush=True)\n"
        "os._exit(0)\n"  # radllm.cli.exit_now, with the iterator still open
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"pdeathsig {int(signal.SIGKILL)}" in out.stdout, out.stdout
    worker = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("worker")))
    try:
        assert _gone([worker], timeout=30)
    finally:
        if psutil.pid_exists(worker):
            psutil.Process(worker).kill()


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.2)
    return False


def test_launch_plan_gives_each_rank_its_place() -> None:
    from radllm.launcher import LaunchPlan

    env = LaunchPlan(["x"], nproc_per_node=4, nnodes=2, node_rank=1, master_addr="head", master_port=1234).rank_environment(2, base={})
    assert env == {"RANK": "6", "LOCAL_RANK": "2", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "LOCAL_SIZE": "4", "CROSS_RANK": "1",
                   "CROSS_SIZE": "2", "MASTER_ADDR": "head", "MASTER_PORT": "1234", "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("script, expected", [
    ("import sys; sys.exit(0)", 0),
    ("import os, sys; sys.exit(75 if os.environ['RANK'] == '1' else 0)", PREEMPTED_EXIT_CODE),
    # rank 1 fails; rank 0 would sleep for a minute: it is asked to stop, then killed after the grace
    ("import os, sys, time, signal; signal.signal(signal.SIGUSR1, signal.SIG_IGN); r = os.environ['RANK']; "
     "time.sleep(0 if r == '1' else 60); sys.exit(3)", 3),
])
def test_launch_exit_status(script: str, expected: int) -> None:
    from radllm.launcher import LaunchPlan, launch

    started = time.monotonic()
    assert launch(LaunchPlan([sys.executable, "-c", script], nproc_per_node=2), grace_s=1.0) == expected
    assert time.monotonic() - started < 30  # the sleeping rank did not hold the launcher for its minute


# --- 2 ranks through the real launchers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_training_artifacts(tmp_path_factory.mktemp("preemption-artifacts"))


def _config(root: Path, artifacts) -> Path:
    """Data-loader workers on; a checkpoint only when asked (save_every beyond the run), so the one
    a stop leaves is the stop's own."""
    return write_train_config(root / "p.yaml", artifacts, root / "run", data__num_workers=1,
                              schedule={"max_steps": MAX_STEPS, "log_every": 1, "eval_every": 100, "save_every": 100, "keep_checkpoints": 2})


def _deepspeed(config: Path) -> list[str]:
    return [str(BIN / "deepspeed"), "--num_accelerators", "2", "--master_port", str(free_port()),
            str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress"]


def _radllm_launch(config: Path) -> list[str]:
    return [str(BIN / "radllm"), "launch", "--nproc-per-node", "2", "--master-port", str(free_port()), "--",
            str(BIN / "radllm"), "train", "--config", str(config), "--no-progress"]


def _job(config: Path) -> list[psutil.Process]:
    """Every live process of the job: launchers, ranks and their data-loader workers."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(config) in " ".join(process.info["cmdline"] or []) or any(
                    str(config) in " ".join(parent.cmdline()) for parent in process.parents()):
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
        except psutil.Error:
            continue
    return found


Target = Callable[[subprocess.Popen, Path], None]


def _signal_runner(proc: subprocess.Popen, config: Path) -> None:
    os.kill(proc.pid, signal.SIGTERM)


def _signal_node_launcher(proc: subprocess.Popen, config: Path) -> None:
    (node,) = [p for p in psutil.Process(proc.pid).children() if "deepspeed.launcher.launch" in " ".join(p.cmdline())]
    node.send_signal(signal.SIGTERM)


def _signal_group(proc: subprocess.Popen, config: Path) -> None:
    os.killpg(proc.pid, signal.SIGTERM)


def _run(cmd: list[str], config: Path, target: Target | None = None) -> tuple[int, str, int]:
    """Run the job; with a target, signal it once step 1 is logged. (exit status, output, last step logged at the signal)."""
    run_dir = config.parent / "run"
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    signalled_at = -1
    try:
        if target is not None:
            deadline = time.monotonic() + 300
            while not logged_train_steps(run_dir) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            signalled_at = max(logged_train_steps(run_dir), default=0)
            target(proc, config)
        output, _ = proc.communicate(timeout=400)  # until every writer of the pipe (ranks included) is gone
        assert _gone([p.pid for p in _job(config)], timeout=60), f"processes of the job left: {[p.cmdline() for p in _job(config)]}"
    finally:
        if proc.poll() is None or _job(config):
            for process in _job(config):
                process.kill()
    return proc.returncode, output, signalled_at


@pytest.fixture(scope="module")
def uninterrupted(artifacts, tmp_path_factory) -> dict[int, dict]:
    root = tmp_path_factory.mktemp("uninterrupted")
    config = _config(root, artifacts)
    status, output, _ = _run(_deepspeed(config), config)
    assert status == 0, output[-4000:]
    return read_metrics(root / "run")


CASES = {
    "deepspeed runner": (_deepspeed, _signal_runner, None),
    "deepspeed per-node launcher": (_deepspeed, _signal_node_launcher, None),
    "deepspeed process group": (_deepspeed, _signal_group, None),
    "radllm launch": (_radllm_launch, _signal_runner, PREEMPTED_EXIT_CODE),
    "radllm launch process group": (_radllm_launch, _signal_group, PREEMPTED_EXIT_CODE),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_signalled_job_saves_the_step_in_progress_leaves_nothing_and_resumes_exactly(case, artifacts, uninterrupted, tmp_path) -> None:
    command, target, expected_status = CASES[case]
    config = _config(tmp_path, artifacts)
    run_dir = tmp_path / "run"
    status, output, signalled_at = _run(command(config), config, target)
    saved = complete_checkpoints(run_dir)
    assert saved, output[-4000:]
    step = int(saved[-1].name.removeprefix("step_"))
    assert signalled_at < step < MAX_STEPS, (signalled_at, step, output[-3000:])
    assert output.count(f"checkpoint {saved[-1]} of step {step} saved") == 2, output[-4000:]  # both ranks say so
    if expected_status is not None:
        assert status == expected_status, output[-4000:]
    print(f"{case}: signalled after step {signalled_at}, saved step {step}, exit status {status}")

    resumed_status, resumed_output, _ = _run([*command(config), "--resume", "auto"], config)
    assert resumed_status == 0, resumed_output[-4000:]
    resumed = read_metrics(run_dir)
    worst = 0.0
    for later in range(step + 1, MAX_STEPS + 1):
        assert resumed[later]["loss"] == pytest.approx(uninterrupted[later]["loss"], rel=1e-6), later
        worst = max(worst, abs(resumed[later]["loss"] / uninterrupted[later]["loss"] - 1))
    print(f"{case}: resumed losses of steps {step + 1}-{MAX_STEPS}, largest relative difference {worst:.2e}")


# --- one writer per run directory -----------------------------------------------------------------------


def test_a_run_dir_held_by_a_live_job_is_refused_and_a_dead_holder_leaves_no_lock(tmp_path: Path) -> None:
    from radllm.errors import RadllmError
    from radllm.training.run_lock import RunLock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from radllm.training.run_lock import RunLock; "
                               f"RunLock.acquire({str(tmp_path)!r}); print('held', flush=True); time.sleep(60)"],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RadllmError, match=rf"in use by a live training job \(.*\"pid\": {holder.pid}"):
            RunLock.acquire(tmp_path)
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    lock = RunLock.acquire(tmp_path)  # the kernel dropped the dead holder's lock
    lock.release()


@pytest.mark.slow
def test_a_second_job_on_a_held_run_dir_fails_on_every_rank_without_hanging(artifacts, tmp_path: Path) -> None:
    from radllm.training.run_lock import RunLock

    config = _config(tmp_path, artifacts)
    lock = RunLock.acquire(tmp_path / "run")
    try:
        status, output, _ = _run(_radllm_launch(config), config)
    finally:
        lock.release()
    assert status == 2 and "is in use by a live training job" in output, output[-3000:]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing of the second job was written


# --- the other multi-rank jobs -------------------------------------------------------------------------


@pytest.mark.slow
def test_vq_training_under_radllm_launch_saves_the_step_in_progress_and_resumes(tmp_path: Path) -> None:
    """SIGTERM to every process of a 2-rank VQ-GAN job (data-loader workers on): rank 0 saves the
    step all ranks agreed on, the launcher exits 75, `--resume` finishes the run."""
    from vq_fixtures import tiny_train_config, write_image_set

    from radllm.recipe.checkpoint_dirs import complete_checkpoints as vq_checkpoints
    from radllm.vq.training import STATE_FILENAME

    manifest = write_image_set(tmp_path / "data")
    out = tmp_path / "vq"
    config = tiny_train_config(manifest, out, data={"num_workers": 1},
                               schedule={"max_steps": 400, "log_every": 1, "eval_every": 1000, "save_every": 2, "revive_every": 1000})
    cmd = [str(BIN / "radllm"), "launch", "--nproc-per-node", "2", "--master-port", str(free_port()), "--",
           str(BIN / "radllm"), "vq-train", "--config", str(config), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not vq_checkpoints(out, STATE_FILENAME) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first = int(vq_checkpoints(out, STATE_FILENAME)[0].name.removeprefix("step_"))
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == PREEMPTED_EXIT_CODE, output[-3000:]
    saved = int(vq_checkpoints(out, STATE_FILENAME)[-1].name.removeprefix("step_"))
    assert first <= saved < 400 and "pre-empted by SIG" in output, output[-3000:]  # SIGTERM, or the launcher's SIGUSR1 first
    assert not (out / "vq").exists()  # no export of an unfinished run
    config.write_text(config.read_text().replace("max_steps: 400", f"max_steps: {saved + 2}"))
    resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    state = json.loads((vq_checkpoints(out, STATE_FILENAME)[-1] / STATE_FILENAME).read_text())
    assert state["step"] == saved + 2 and (out / "vq").is_dir()


# --- samples lost to a damaged shard -------------------------------------------------------------------


@pytest.mark.slow
def test_samples_lost_to_a_damaged_shard_are_counted_in_metrics_and_tensorboard(artifacts, tmp_path: Path) -> None:
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shards = tmp_path / "shards"
    shutil.copytree(artifacts.shards, shards)
    broken = sorted(shards.glob("train-*.tar"))[0]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # the shard breaks off midway
    config = write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run", data__shards=str(shards), data__num_workers=1,
                                schedule={"max_steps": 3, "log_every": 1, "eval_every": 100, "save_every": 100, "keep_checkpoints": 1})
    env = ENV | {"MASTER_PORT": str(free_port())}
    result = subprocess.run([sys.executable, str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = read_metrics(tmp_path / "run")
    missing = [records[step]["data"]["missing"] for step in sorted(records)]
    corrupt = [records[step]["data"]["corrupt"] for step in sorted(records)]  # the sample the cut went through
    assert missing[-1] > 0 and missing == sorted(missing) and corrupt == sorted(corrupt), (missing, corrupt)  # counts only grow
    events = EventAccumulator(str(next((tmp_path / "run").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert [e.value for e in events.Scalars("train/data/missing")][-1] == missing[-1]
    assert [e.value for e in events.Scalars("train/data/corrupt")][-1] == corrupt[-1]
