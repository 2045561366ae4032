"""scripts/slurm: syntax, what common.sh derives from slurm's variables, what each sbatch launches,
and a pre-emption that ends in a saved checkpoint and a requeue.

No slurm here: `scontrol` and `srun` are small fakes put first on PATH. The fake srun starts its
command once per node with SLURM_NODEID set and forwards the signals it gets to them, as slurm's
srun does. The fast tests replace the Python that `radllm launch` runs with a recorder and check
the recorded argv with radllm's own parser, and that the time limit's USR1 to the batch script
reaches every node's launcher. The slow test runs train.sbatch for real (two "nodes" on
loopback, one CPU rank each, `radllm launch` on each), cancels it as `scancel` does (SIGTERM to
every process of the job) and checks the checkpoint, the requeue and the requeued job's finish.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from training_fixtures import logged_train_steps, make_training_artifacts, write_train_config

from radllm.cli import build_parser
from radllm.preemption import PREEMPTED_EXIT_CODE
from radllm.training.checkpoint import complete_checkpoints, rank_state_path
from radllm.training.run_log import read_metrics

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "scripts" / "slurm"
SBATCH_FILES = sorted(SLURM.glob("*.sbatch"))

FAKE_SCONTROL = """#!/bin/bash
# fake: scontrol show hostnames NODELIST -> the hosts in $FAKE_HOSTS; scontrol requeue JOB -> recorded (fails when $FAIL_REQUEUE is set)
if [[ "$1" == requeue ]]; then [[ -z "${FAIL_REQUEUE:-}" ]] || exit 1; echo "$2" > "$RECORD_DIR/requeue"; exit 0; fi
[[ "$1 $2" == "show hostnames" && "$3" == "$EXPECT_NODELIST" ]] || { echo "unexpected scontrol $*" >&2; exit 1; }
printf '%s\\n' $FAKE_HOSTS
"""

FAKE_SRUN = """#!/bin/bash
# fake: srun [--opt=value ...] CMD...: CMD once per node, concurrently, with SLURM_NODEID set;
# the signals srun forwards to its tasks are forwarded to them
printf '%s\\n' "$@" > "$RECORD_DIR/srun.args"
n=1
while [[ "$1" == --* ]]; do
    case "$1" in --nodes=*) n="${1#--nodes=}" ;; esac
    shift
done
pids=()
for ((i = 0; i < n; i++)); do SLURM_NODEID=$i "$@" & pids+=($!); done
for sig in USR1 TERM INT; do trap "echo $sig >> \\"\\$RECORD_DIR/srun.signals\\"; kill -$sig ${pids[*]} 2>/dev/null" $sig; done
rc=0
for p in "${pids[@]}"; do
    while true; do wait "$p" && s=0 || s=$?; kill -0 "$p" 2>/dev/null || break; done
    (( s > 128 )) && { wait "$p" && s=0 || s=$?; }
    (( s > rc )) && rc=$s  # like srun: the largest task exit code
done
exit $rc
"""

# Stands in for the Python that `radllm launch` runs: records its argv per node; with
# FAKE_STATUS it exits with that status, else it waits for USR1 or TERM and exits 75, as
# pre-empted launchers do.
FAKE_PYTHON = """#!/bin/bash
printf '%s\\n' "$@" > "$RECORD_DIR/python.node$SLURM_NODEID.args"
[[ -n "${FAKE_STATUS:-}" ]] && exit "$FAKE_STATUS"
trap 'echo USR1 > "$RECORD_DIR/stop.node$SLURM_NODEID"; exit 75' USR1
trap 'echo TERM > "$RECORD_DIR/stop.node$SLURM_NODEID"; exit 75' TERM
touch "$RECORD_DIR/started.node$SLURM_NODEID"
while :; do sleep 0.05; done
"""


def _fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"scontrol": FAKE_SCONTROL, "srun": FAKE_SRUN, "fake-python": FAKE_PYTHON}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _slurm_env(tmp_path: Path, hosts: list[str], real_python: bool = False, **extra: str) -> dict[str, str]:
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    bin_dir = _fake_bin(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "GPUS_PER_NODE", "RADLLM_"))}
    env.update(
        PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}",
        SLURM_JOB_ID="123456",
        SLURM_JOB_NODELIST="gpu[01-03]",
        EXPECT_NODELIST="gpu[01-03]",
        SLURM_JOB_NUM_NODES=str(len(hosts)),
        SLURM_SUBMIT_DIR=str(REPO),
        FAKE_HOSTS=" ".join(hosts),
        RECORD_DIR=str(record),
        RADLLM_PYTHON=sys.executable if real_python else str(bin_dir / "fake-python"),
    )
    env.update(extra)
    return env


def _source_common(env: dict[str, str], then: str = "") -> subprocess.CompletedProcess:
    script = f'set -euo pipefail; source "{SLURM / "common.sh"}"; {then}'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", [SLURM / "common.sh", *SBATCH_FILES], ids=lambda p: p.name)
def test_bash_syntax(path):
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_every_sbatch_file_exists_has_a_header_and_asks_for_a_notice_and_a_requeue():
    assert {p.name for p in SBATCH_FILES} == {"train.sbatch", "vq_train.sbatch", "tokenize.sbatch", "generate.sbatch", "sweep.sbatch"}
    for path in SBATCH_FILES:
        text = path.read_text()
        header = text.split("#SBATCH", 1)[0]
        assert "Variables" in header and "Example" in header and "sbatch " in header, path.name
        assert 'source "${RADLLM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}/scripts/slurm/common.sh"' in text
        assert "#SBATCH --requeue" in text and re.search(r"#SBATCH --signal=B:USR1@\d+", text), path.name
        assert "radllm_run_job " in text, path.name


def test_common_derives_the_rendezvous(tmp_path):
    env = _slurm_env(tmp_path, ["gpu01", "gpu02", "gpu03"], SLURM_GPUS_PER_NODE="h100:4")
    out = _source_common(env, 'echo "$MASTER_ADDR $MASTER_PORT $NNODES $GPUS_PER_NODE $PYTHONPATH"; pwd')
    assert out.returncode == 0, out.stderr
    values, cwd = out.stdout.splitlines()
    addr, port, nnodes, gpus, pythonpath = values.split()
    assert (addr, port, nnodes, gpus) == ("gpu01", str(10000 + 123456 % 20000), "3", "4")
    assert pythonpath.split(":")[0] == str(REPO) and cwd == str(REPO)


def test_common_respects_explicit_values(tmp_path):
    env = _slurm_env(tmp_path, ["a", "b"], SLURM_GPUS_ON_NODE="2", GPUS_PER_NODE="8", MASTER_PORT="29999")
    out = _source_common(env, 'echo "$MASTER_PORT $GPUS_PER_NODE $NNODES $MASTER_ADDR"')
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["29999", "8", "2", "a"]
    env = _slurm_env(tmp_path, ["a"], SLURM_GPUS_ON_NODE="2", SLURM_JOB_NUM_NODES="1")
    out = _source_common(env, 'echo "$GPUS_PER_NODE $NNODES"')
    assert out.stdout.split() == ["2", "1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SLURM_JOB_ID": None}, "SLURM_JOB_ID is not set"),
        ({"SLURM_JOB_NODELIST": None}, "SLURM_JOB_NODELIST is not set"),
        ({}, "GPUS_PER_NODE=''"),
        ({"GPUS_PER_NODE": "eight"}, "GPUS_PER_NODE='eight'"),
        ({"GPUS_PER_NODE": "8", "SLURM_JOB_NUM_NODES": "5"}, "SLURM_JOB_NUM_NODES=5 but 'gpu\\[01-03\\]' expands to 2 hosts"),
        ({"GPUS_PER_NODE": "8", "SLURM_SUBMIT_DIR": "/"}, "RADLLM_ROOT=/ is not the radllm repository"),
    ],
)
def test_common_errors_are_clear(tmp_path, change, message):
    env = _slurm_env(tmp_path, ["gpu01", "gpu02"])
    for key, value in change.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    out = _source_common(env, "echo reached")
    assert out.returncode != 0 and "reached" not in out.stdout
    assert re.search(message, out.stderr), out.stderr


SBATCH_CASES = {
    "train.sbatch": ({"CONFIG": "configs/train/x.yaml", "TRAIN_ARGS": "--set optim.lr=1e-5"}, "train",
                     ["--config", "configs/train/x.yaml", "--resume", "auto", "--no-progress", "--set", "optim.lr=1e-5"]),
    "vq_train.sbatch": ({"CONFIG": "configs/vq/mimic_f16_256.yaml"}, "vq-train",
                        ["--config", "configs/vq/mimic_f16_256.yaml", "--resume", "--no-progress"]),
    "tokenize.sbatch": ({"MANIFEST": "m.jsonl", "VQ": "vq dir", "TOKENIZER": "tok", "OUT": "shards", "TOKENIZE_ARGS": "--shard-size 500"},
                        "tokenize",
                        ["--manifest", "m.jsonl", "--vq", "vq dir", "--tokenizer", "tok", "--out", "shards", "--no-progress", "--shard-size", "500"]),
    "generate.sbatch": ({"TASK": "reports", "MODEL": "model", "VQ": "vq", "INPUT": "shards", "OUT": "p.jsonl", "GENERATE_ARGS": "--split test"},
                        "generate",
                        ["reports", "--model", "model", "--vq", "vq", "--input", "shards", "--out", "p.jsonl", "--no-progress", "--split", "test"]),
}


def _recorded_launch(record: Path, node: int) -> tuple[dict, list[str]]:
    """The `radllm launch` options one node's fake Python got, and the rank command after `--`."""
    argv = (record / f"python.node{node}.args").read_text().splitlines()
    assert argv[:3] == ["-m", "radllm", "launch"], argv
    args = build_parser().parse_args(argv[2:])
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return vars(args), command


@pytest.mark.parametrize("name", sorted(SBATCH_CASES))
def test_sbatch_runs_radllm_launch_once_per_node_with_valid_arguments(tmp_path, name):
    variables, subcommand, expected_args = SBATCH_CASES[name]
    env = _slurm_env(tmp_path, ["gpu01", "gpu02"], SLURM_GPUS_ON_NODE="8", SLURM_CPUS_PER_TASK="64", FAKE_STATUS="0", **variables)
    out = subprocess.run(["bash", str(SLURM / name)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    record = tmp_path / "record"
    srun_args = (record / "srun.args").read_text().splitlines()
    assert {"--nodes=2", "--ntasks-per-node=1", "--export=ALL", "--cpus-per-task=64"} <= set(srun_args)
    for node in (0, 1):
        launch, command = _recorded_launch(record, node)
        assert (launch["nnodes"], launch["node_rank"], launch["nproc_per_node"]) == (2, node, 8)
        assert (launch["master_addr"], launch["master_port"]) == ("gpu01", 10000 + 123456 % 20000)
        assert command[:4] == [env["RADLLM_PYTHON"], "-m", "radllm", subcommand]
        assert command[4:] == expected_args
        # radllm's own parser accepts the rank command, each option with its value.
        parsed = vars(build_parser().parse_args(command[3:]))
        for option, value in zip(expected_args, expected_args[1:]):
            if option.startswith("--") and not value.startswith("--") and option != "--set":
                assert str(parsed[option[2:].replace("-", "_")]) == value, option


@pytest.mark.parametrize("name, config", [("train.sbatch", "configs/train/x.yaml"), ("vq_train.sbatch", "configs/vq/y.yaml")])
def test_sbatch_takes_the_config_as_its_argument_too(tmp_path, name, config):
    """`sbatch scripts/slurm/train.sbatch CONFIG` (as the configs' headers show) and `CONFIG=... sbatch ...` launch the same."""
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8", FAKE_STATUS="0")
    out = subprocess.run(["bash", str(SLURM / name), config], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _, command = _recorded_launch(tmp_path / "record", 0)
    assert command[command.index("--config") + 1] == config


@pytest.mark.parametrize("command, resume", [("train", ["--resume", "auto"]), ("vq-train", ["--resume"])])
def test_sweep_sbatch_runs_the_array_tasks_variant(tmp_path, command, resume):
    """Array task N runs line N+1 of variants.txt with that variant's planned config; a task past the end is refused."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "variants.txt").write_text("lambda_0\nlambda_10\n")
    (sweep / "command").write_text(f"{command}\n")
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8", FAKE_STATUS="0", SLURM_ARRAY_TASK_ID="1")
    out = subprocess.run(["bash", str(SLURM / "sweep.sbatch"), str(sweep)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "variant lambda_10" in out.stderr
    _, rank_command = _recorded_launch(tmp_path / "record", 0)
    assert rank_command[3:] == [command, "--config", str(sweep / "lambda_10" / "config.yaml"), *resume, "--no-progress"]
    build_parser().parse_args(rank_command[3:])
    env["SLURM_ARRAY_TASK_ID"] = "2"
    out = subprocess.run(["bash", str(SLURM / "sweep.sbatch"), str(sweep)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "array task 2" in out.stderr and "has 2 variant(s)" in out.stderr
    (sweep / "variants.txt").unlink()
    env["SLURM_ARRAY_TASK_ID"] = "0"
    out = subprocess.run(["bash", str(SLURM / "sweep.sbatch"), str(sweep)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "plan it first" in out.stderr


def test_sbatch_requires_its_variables(tmp_path):
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8")
    out = subprocess.run(["bash", str(SLURM / "train.sbatch")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "give a run config" in out.stderr
    assert not (tmp_path / "record" / "python.node0.args").exists()


@pytest.mark.parametrize("name", sorted(SBATCH_CASES))
@pytest.mark.parametrize("status", [0, PREEMPTED_EXIT_CODE, 3])
def test_sbatch_requeues_only_after_a_preemption_checkpoint(tmp_path, name, status):
    env = _slurm_env(tmp_path, ["gpu01", "gpu02"], SLURM_GPUS_ON_NODE="8", FAKE_STATUS=str(status), **SBATCH_CASES[name][0])
    out = subprocess.run(["bash", str(SLURM / name)], env=env, capture_output=True, text=True, timeout=60)
    requeued = tmp_path / "record" / "requeue"
    if status == PREEMPTED_EXIT_CODE:
        assert out.returncode == 0 and requeued.read_text().strip() == "123456", out.stderr
        assert "requeueing job 123456" in out.stderr
    else:
        assert out.returncode == status and not requeued.exists(), out.stderr


def test_a_failed_requeue_says_the_checkpoint_is_saved_and_exits_75(tmp_path):
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8", FAKE_STATUS=str(PREEMPTED_EXIT_CODE), FAIL_REQUEUE="1",
                     CONFIG="configs/train/x.yaml")
    out = subprocess.run(["bash", str(SLURM / "train.sbatch")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == PREEMPTED_EXIT_CODE
    assert "scontrol requeue 123456 failed; the checkpoint is saved" in out.stderr


def _wait_for(paths: list[Path], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {[str(p) for p in paths if not p.exists()]}"
        time.sleep(0.05)


@pytest.mark.parametrize("notice", ["USR1", "TERM"])
def test_a_notice_to_the_batch_script_reaches_every_nodes_launcher_and_requeues(tmp_path, notice):
    """USR1 is what `#SBATCH --signal=B:USR1@LEAD` sends the batch script alone; a TERM to it alone must not end it either."""
    env = _slurm_env(tmp_path, ["gpu01", "gpu02"], SLURM_GPUS_ON_NODE="8", CONFIG="configs/train/x.yaml")
    record = tmp_path / "record"
    proc = subprocess.Popen(["bash", str(SLURM / "train.sbatch")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for([record / f"started.node{n}" for n in (0, 1)])
    proc.send_signal(getattr(signal, f"SIG{notice}"))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert [(record / f"stop.node{n}").read_text().strip() for n in (0, 1)] == [notice, notice]
    assert (record / "requeue").read_text().strip() == "123456"
    assert f"the ranks saved and stopped after {notice}; requeueing job 123456" in stderr


# --- the real thing: train.sbatch, two "nodes" on loopback, one CPU rank each --------------------------------

MAX_STEPS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _job_processes(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _signal_every_process(proc: subprocess.Popen) -> None:
    """scancel: slurm sends SIGTERM to every process of the job (batch shell, srun, launchers, ranks, workers)."""
    for process in _job_processes(psutil.Process(proc.pid)):
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_training_artifacts(tmp_path_factory.mktemp("slurm-artifacts"))


@pytest.mark.slow
def test_train_sbatch_cancelled_saves_requeues_and_the_requeued_job_finishes(artifacts, tmp_path):
    """scancel's SIGTERM to every process of the job (batch shell, srun, launchers, ranks, workers).
    The time limit's USR1 reaches only the batch shell, which passes it to srun like this SIGTERM
    (`test_a_notice_to_the_batch_script_...`); `radllm launch` answers both alike (tests/test_preemption.py)."""
    run_dir = tmp_path / "run"
    config = write_train_config(tmp_path / "c.yaml", artifacts, run_dir, data__num_workers=1,
                                schedule={"max_steps": MAX_STEPS, "log_every": 1, "eval_every": 100, "save_every": 100, "keep_checkpoints": 2})
    env = _slurm_env(tmp_path, ["localhost", "127.0.0.1"], real_python=True, GPUS_PER_NODE="1", MASTER_PORT=str(_free_port()),
                     CONFIG=str(config), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(["bash", str(SLURM / "train.sbatch")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    processes: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while not logged_train_steps(run_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        signalled_at = max(logged_train_steps(run_dir), default=0)
        processes = _job_processes(psutil.Process(proc.pid))
        _signal_every_process(proc)
        output, _ = proc.communicate(timeout=300)
        _, alive = psutil.wait_procs(processes, timeout=30)
        assert not alive, f"processes of the job left: {[p.cmdline() for p in alive]}"
    finally:
        for process in _job_processes(psutil.Process(proc.pid)) if proc.poll() is None else []:
            process.kill()
    assert proc.returncode == 0, output[-4000:]
    assert (tmp_path / "record" / "requeue").read_text().strip() == "123456", output[-4000:]
    saved = complete_checkpoints(run_dir)
    step = int(saved[-1].name.removeprefix("step_"))
    assert signalled_at < step < MAX_STEPS, (signalled_at, step, output[-3000:])
    assert [rank_state_path(saved[-1], r).is_file() for r in (0, 1, 2)] == [True, True, False]  # two "nodes", one job
    assert read_metrics(run_dir, "checkpoint")[step]["bytes"] > 0

    # The requeued job: the same batch script, --resume auto by default.
    env["MASTER_PORT"] = str(_free_port())
    again = subprocess.run(["bash", str(SLURM / "train.sbatch")], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert set(read_metrics(run_dir)) == set(range(1, MAX_STEPS + 1))
    assert f"rank 0: resumed from {saved[-1]} at step {step}" in again.stdout + again.stderr
    print(f"scancel: signalled after step {signalled_at}, saved step {step}; the requeued job finished step {MAX_STEPS}")
