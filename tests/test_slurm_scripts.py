"""scripts/slurm: syntax, what common.sh derives from slurm's variables, and what each sbatch launches.

No slurm here: `scontrol` and `srun` are small fakes put first on PATH. The fake srun starts its
command once per node with SLURM_NODEID set, as slurm does. The sbatch tests record the argv that
reaches `deepspeed` and check it against deepspeed's own argument parser and the entry point's
parser; the slow test runs the real deepspeed launcher twice (node ranks 0 and 1 on loopback)
through common.sh and checks that the two "nodes" form one process group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from deepspeed.launcher.runner import _parse_hostfile
from deepspeed.launcher.runner import parse_args as deepspeed_parse_args

from radllm.cli import build_parser, subcommand_argv

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "scripts" / "slurm"
SBATCH_FILES = sorted(SLURM.glob("*.sbatch"))

FAKE_SCONTROL = """#!/bin/bash
# fake: scontrol show hostnames NODELIST -> the hosts in $FAKE_HOSTS; scontrol requeue JOB -> recorded
if [[ "$1" == requeue ]]; then echo "$2" > "$RECORD_DIR/requeue"; exit 0; fi
[[ "$1 $2" == "show hostnames" && "$3" == "$EXPECT_NODELIST" ]] || { echo "unexpected scontrol $*" >&2; exit 1; }
printf '%s\\n' $FAKE_HOSTS
"""

FAKE_SRUN = """#!/bin/bash
# fake: srun [--opt=value ...] CMD...: CMD once per node, concurrently, with SLURM_NODEID set
printf '%s\\n' "$@" > "$RECORD_DIR/srun.args"
n=1
while [[ "$1" == --* ]]; do
    case "$1" in --nodes=*) n="${1#--nodes=}" ;; esac
    shift
done
pids=()
for ((i = 0; i < n; i++)); do SLURM_NODEID=$i "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || { s=$?; (( s > rc )) && rc=$s; }; done  # like srun: the largest task exit code
exit $rc
"""

FAKE_DEEPSPEED = """#!/bin/bash
# fake: record the launcher's argv, one argument per line
printf '%s\\n' "$@" > "$RECORD_DIR/deepspeed.node$SLURM_NODEID.args"
"""


def _fake_bin(tmp_path: Path, with_deepspeed: bool) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fakes = {"scontrol": FAKE_SCONTROL, "srun": FAKE_SRUN} | ({"deepspeed": FAKE_DEEPSPEED} if with_deepspeed else {})
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _slurm_env(tmp_path: Path, hosts: list[str], with_deepspeed: bool = True, **extra: str) -> dict[str, str]:
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "GPUS_PER_NODE", "RADLLM_"))}
    env.update(
        PATH=f"{_fake_bin(tmp_path, with_deepspeed)}:{Path(sys.executable).parent}:{env['PATH']}",
        SLURM_JOB_ID="123456",
        SLURM_JOB_NODELIST="gpu[01-03]",
        EXPECT_NODELIST="gpu[01-03]",
        SLURM_JOB_NUM_NODES=str(len(hosts)),
        SLURM_SUBMIT_DIR=str(REPO),
        FAKE_HOSTS=" ".join(hosts),
        RADLLM_JOB_DIR=str(tmp_path / "job"),
        RECORD_DIR=str(record),
    )
    env.update(extra)
    return env


def _source_common(env: dict[str, str], then: str = "") -> subprocess.CompletedProcess:
    script = f'set -euo pipefail; source "{SLURM / "common.sh"}"; {then}'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", [SLURM / "common.sh", *SBATCH_FILES], ids=lambda p: p.name)
def test_bash_syntax(path):
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_every_sbatch_file_exists_and_has_a_header():
    assert {p.name for p in SBATCH_FILES} == {"train.sbatch", "vq_train.sbatch", "tokenize.sbatch", "generate.sbatch"}
    for path in SBATCH_FILES:
        header = path.read_text().split("#SBATCH", 1)[0]
        assert "Variables" in header and "Example" in header and "sbatch " in header, path.name
        assert 'source "${RADLLM_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}/scripts/slurm/common.sh"' in path.read_text()


def test_common_writes_hostfile_and_rendezvous(tmp_path):
    env = _slurm_env(tmp_path, ["gpu01", "gpu02", "gpu03"], SLURM_GPUS_PER_NODE="h100:4")
    out = _source_common(env, 'echo "$MASTER_ADDR $MASTER_PORT $NNODES $GPUS_PER_NODE $RADLLM_HOSTFILE $PYTHONPATH"; pwd')
    assert out.returncode == 0, out.stderr
    values, cwd = out.stdout.splitlines()
    addr, port, nnodes, gpus, hostfile, pythonpath = values.split()
    assert (addr, port, nnodes, gpus) == ("gpu01", str(10000 + 123456 % 20000), "3", "4")
    assert hostfile == str(tmp_path / "job" / "hostfile")
    text = Path(hostfile).read_text()
    assert text == "gpu01 slots=4\ngpu02 slots=4\ngpu03 slots=4\n"
    # deepspeed's own hostfile parser reads it, in node order.
    assert list(_parse_hostfile(text.splitlines()).items()) == [("gpu01", 4), ("gpu02", 4), ("gpu03", 4)]
    assert pythonpath.split(":")[0] == str(REPO) and cwd == str(REPO)


def test_common_respects_explicit_values(tmp_path):
    env = _slurm_env(tmp_path, ["a", "b"], SLURM_GPUS_ON_NODE="2", GPUS_PER_NODE="8", MASTER_PORT="29999")
    out = _source_common(env, 'echo "$MASTER_PORT $GPUS_PER_NODE"; cat "$RADLLM_HOSTFILE"')
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["29999 8", "a slots=8", "b slots=8"]
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


def _load_entry_point(path: Path):
    spec = importlib.util.spec_from_file_location(f"entry_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SBATCH_CASES = {
    "train.sbatch": ({"CONFIG": "configs/train/x.yaml", "TRAIN_ARGS": "--set optim.lr=1e-5"}, "radllm/train.py",
                     ["--config", "configs/train/x.yaml", "--resume", "auto", "--no-progress", "--set", "optim.lr=1e-5"]),
    "vq_train.sbatch": ({"CONFIG": "configs/vq/mimic_f16_256.yaml"}, "tools/train_vqgan.py",
                        ["--config", "configs/vq/mimic_f16_256.yaml", "--resume", "--no-progress"]),
    "tokenize.sbatch": ({"MANIFEST": "m.jsonl", "VQ": "vq dir", "TOKENIZER": "tok", "OUT": "shards", "TOKENIZE_ARGS": "--shard-size 500"},
                        "tools/tokenize_shards.py",
                        ["--manifest", "m.jsonl", "--vq", "vq dir", "--tokenizer", "tok", "--out", "shards", "--no-progress", "--shard-size", "500"]),
    "generate.sbatch": ({"TASK": "reports", "MODEL": "model", "VQ": "vq", "INPUT": "shards", "OUT": "p.jsonl", "GENERATE_ARGS": "--split test"},
                        "tools/generate.py",
                        ["reports", "--model", "model", "--vq", "vq", "--input", "shards", "--out", "p.jsonl", "--no-progress", "--split", "test"]),
}


@pytest.mark.parametrize("name", sorted(SBATCH_CASES))
def test_sbatch_launches_one_deepspeed_per_node_with_valid_arguments(tmp_path, name):
    variables, entry, expected_user_args = SBATCH_CASES[name]
    env = _slurm_env(tmp_path, ["gpu01", "gpu02"], SLURM_GPUS_ON_NODE="8", SLURM_CPUS_PER_TASK="64", **variables)
    out = subprocess.run(["bash", str(SLURM / name)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    record = tmp_path / "record"
    srun_args = (record / "srun.args").read_text().splitlines()
    assert {"--nodes=2", "--ntasks-per-node=1", "--export=ALL", "--cpus-per-task=64"} <= set(srun_args)
    for node in (0, 1):
        argv = (record / f"deepspeed.node{node}.args").read_text().splitlines()
        launcher = deepspeed_parse_args(argv)  # deepspeed's own parser accepts every option
        assert launcher.no_ssh and launcher.node_rank == node and launcher.num_nodes == 2 and launcher.num_gpus == 8
        assert (launcher.master_addr, launcher.master_port) == ("gpu01", 10000 + 123456 % 20000)
        assert launcher.hostfile == str(tmp_path / "job" / "hostfile")
        assert launcher.user_script == entry and (REPO / entry).is_file()
        assert launcher.user_args == expected_user_args
    # The entry point's parser accepts the arguments, placed after the --local_rank that
    # deepspeed.launcher.launch inserts right after the script: the shim forwards them to its
    # `radllm` subcommand, whose parser is the one that runs.
    module = _load_entry_point(REPO / entry)
    args = vars(build_parser().parse_args(subcommand_argv(module.COMMAND, ["--local_rank=0", *expected_user_args])))
    for option, value in zip(expected_user_args, expected_user_args[1:]):
        if option.startswith("--") and not value.startswith("--") and option != "--set":
            assert str(args[option[2:].replace("-", "_")]) == value, option


@pytest.mark.parametrize("name, config", [("train.sbatch", "configs/train/x.yaml"), ("vq_train.sbatch", "configs/vq/y.yaml")])
def test_sbatch_takes_the_config_as_its_argument_too(tmp_path, name, config):
    """`sbatch scripts/slurm/train.sbatch CONFIG` (as the configs' headers show) and `CONFIG=... sbatch ...` launch the same."""
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8")
    out = subprocess.run(["bash", str(SLURM / name), config], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    argv = (tmp_path / "record" / "deepspeed.node0.args").read_text().splitlines()
    assert argv[argv.index("--config") + 1] == config


def test_sbatch_requires_its_variables(tmp_path):
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8")
    out = subprocess.run(["bash", str(SLURM / "train.sbatch")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "give a run config" in out.stderr
    assert not (tmp_path / "record" / "deepspeed.node0.args").exists()


PROBE = """
import json, os, sys
import torch, torch.distributed as dist
dist.init_process_group("gloo")
total = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(total)
record = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "CROSS_RANK", "MASTER_ADDR", "MASTER_PORT", "RADLLM_PROBE")}
record["sum"] = total.item()
with open(os.path.join(sys.argv[-1], f"rank{dist.get_rank()}.json"), "w") as fh:
    json.dump(record, fh)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_simulated_nodes_form_one_process_group(tmp_path):
    """common.sh + the real deepspeed launcher, node ranks 0 and 1 on loopback, one rank each."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    results = tmp_path / "results"
    results.mkdir()
    env = _slurm_env(
        tmp_path, ["localhost", "127.0.0.1"], with_deepspeed=False, GPUS_PER_NODE="1", MASTER_PORT=str(port),
        DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", RADLLM_PROBE="propagated",
    )
    out = _source_common(env, f'radllm_deepspeed "{probe}" "{results}"')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = [json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, record in enumerate(ranks):
        assert record["RANK"] == str(rank) and record["WORLD_SIZE"] == "2" and record["LOCAL_RANK"] == "0"
        assert record["CROSS_RANK"] == str(rank)  # node rank = SLURM_NODEID
        assert (record["MASTER_ADDR"], record["MASTER_PORT"]) == ("localhost", str(port))
        assert record["RADLLM_PROBE"] == "propagated"  # the batch environment reaches every rank
        assert record["sum"] == 3.0  # one process group across both "nodes"


# A "rank" that waits for USR1 and then exits the way a pre-empted trainer does; fake pkill
# delivers the signal to it by pid (a real pkill -f could reach real trainings on this machine).
FAKE_RANK = """#!/bin/bash
printf '%s\\n' "$@" > "$RECORD_DIR/deepspeed.node$SLURM_NODEID.args"
trap 'exit 75' USR1
echo $$ > "$RECORD_DIR/rank$SLURM_NODEID.pid"
while :; do sleep 0.05; done
"""
FAKE_PKILL = """#!/bin/bash
printf '%s\\n' "$@" > "$RECORD_DIR/pkill.args"
kill "$1" "$(cat "$RECORD_DIR/rank$SLURM_NODEID.pid")"
"""


@pytest.mark.parametrize("exit_code", [75, 3])
def test_train_sbatch_requeues_only_after_a_preemption_checkpoint(tmp_path, exit_code):
    env = _slurm_env(tmp_path, ["gpu01"], SLURM_GPUS_ON_NODE="8", CONFIG="configs/train/x.yaml")
    bin_dir = tmp_path / "bin"
    (bin_dir / "deepspeed").write_text(f"#!/bin/bash\nexit {exit_code}\n")
    (bin_dir / "deepspeed").chmod(0o755)
    out = subprocess.run(["bash", str(SLURM / "train.sbatch")], env=env, capture_output=True, text=True, timeout=60)
    requeued = tmp_path / "record" / "requeue"
    if exit_code == 75:
        assert out.returncode == 0 and requeued.read_text().strip() == "123456", out.stderr
    else:
        assert out.returncode == exit_code and not requeued.exists()


def test_train_sbatch_passes_the_preemption_notice_to_the_ranks(tmp_path):
    import signal
    import time

    env = _slurm_env(tmp_path, ["gpu01", "gpu02"], SLURM_GPUS_ON_NODE="8", CONFIG="configs/train/x.yaml")
    bin_dir = tmp_path / "bin"
    for name, text in (("deepspeed", FAKE_RANK), ("pkill", FAKE_PKILL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    proc = subprocess.Popen(["bash", str(SLURM / "train.sbatch")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    record = tmp_path / "record"
    deadline = time.monotonic() + 30
    while not all((record / f"rank{n}.pid").exists() for n in (0, 1)) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@300` does
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "pre-emption notice" in stderr and (record / "requeue").read_text().strip() == "123456"
    assert (record / "pkill.args").read_text().splitlines() == ["-USR1", "-f", "--", "radllm/train.py --local_rank"]
    assert "--overlap" in (record / "srun.args").read_text().splitlines()
