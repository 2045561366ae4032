"""setup.cfg declares the versions the code needs: the floor of each dependency is at least the
release that introduced the APIs radllm calls, and this environment satisfies every declared range."""

from __future__ import annotations

import configparser
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

#: dependency -> (oldest release with what radllm uses, what that is and where)
API_FLOORS = {
    "torch": ("2.5", "torch.serialization.safe_globals and get_unsafe_globals_in_checkpoint (radllm/training/safe_checkpoint.py)"),
    "transformers": ("5.0", "from_pretrained(dtype=), cache_utils.DynamicLayer (radllm/generation/kv_cache.py), LlamaTokenizer(vocab=, merges=)"),
    "pydicom": ("3.0", "pydicom.pixels: apply_modality_lut, apply_voi_lut, get_decoder (radllm/imaging/dicom.py)"),
    "peft": ("0.18", "trainable_token_indices on an untied lm_head (radllm/training/lora.py)"),
}


def declared() -> dict[str, Requirement]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {r.name.lower(): r for r in requirements}


def floor(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return max(floors) if floors else None


@pytest.mark.parametrize("name", sorted(API_FLOORS))
def test_declared_floor_covers_the_apis_the_code_uses(name):
    needed, why = API_FLOORS[name]
    requirement = declared()[name]
    assert floor(requirement) is not None and floor(requirement) >= Version(needed), f"{requirement}: the code needs {name} >= {needed} for {why}"


def test_this_environment_satisfies_every_declared_range():
    for name, requirement in declared().items():
        installed = Version(version(name).split("+")[0])
        assert requirement.specifier.contains(installed, prereleases=True), f"{name} {installed} is outside {requirement}"


def test_qlora_extra_installs_a_bitsandbytes_with_cpu_4bit_kernels():
    from radllm.training.lora import CPU_4BIT_BITSANDBYTES

    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = [line.strip() for line in parser["options.extras_require"]["qlora"].splitlines()]
    (requirement,) = [Requirement(line) for line in lines if line and not line.startswith("#")]
    assert requirement.name == "bitsandbytes"
    assert floor(requirement) >= Version(".".join(map(str, CPU_4BIT_BITSANDBYTES)))


@pytest.mark.slow
def test_a_non_editable_install_trains_from_anywhere_with_its_packaged_ds_configs(tmp_path):
    """`pip install .` (a wheel, not the checkout) then `deepspeed --module radllm.train` from another
    directory, 2 CPU ranks: the entry module and `ds_configs/zero3.json` come from the installed copy."""
    import os
    import socket
    import subprocess
    import sys

    from launching import run_group
    from training_fixtures import make_training_artifacts, write_train_config

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)], check=True)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), *map(str, wheels.glob("radllm-*.whl"))], check=True)
    assert (site / "radllm" / "ds_configs" / "zero3.json").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = os.environ | {"PYTHONPATH": str(site), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    where = subprocess.run([sys.executable, "-c", "import radllm; print(radllm.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(site / "radllm" / "__init__.py")
    for command in ("generate", "tokenize", "vq-train", "train"):  # the multi-process jobs ship too: `deepspeed --module radllm COMMAND`
        subprocess.run([sys.executable, "-m", "radllm", "--local_rank=0", command, "--help"], cwd=elsewhere, env=env,
                       capture_output=True, check=True)

    art = make_training_artifacts(tmp_path / "art")
    config = write_train_config(elsewhere / "run.yaml", art, tmp_path / "run", deepspeed="ds_configs/zero3.json",
                                schedule={"max_steps": 2, "log_every": 1, "eval_every": 2, "save_every": 2, "keep_checkpoints": 1})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_accelerators", "2", "--master_port", str(port),
           "--module", "radllm.train", "--config", str(config), "--no-progress"]
    result = run_group(cmd, cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()  # `elsewhere` has no ds_configs/: the package's was used


@pytest.mark.parametrize("shim, command", [("radllm/train.py", "train"), ("tools/generate.py", "generate"),
                                           ("tools/tokenize_shards.py", "tokenize"), ("tools/train_vqgan.py", "vq-train")])
def test_each_launch_shim_is_its_radllm_subcommand(shim, command):
    """`deepspeed SHIM --local_rank=N ARGS` runs `radllm COMMAND ARGS`: the shim's help is the subcommand's."""
    import os
    import subprocess
    import sys

    env = os.environ | {"PYTHONPATH": str(REPO)}  # tools/*.py import radllm from the checkout, as the sbatch scripts arrange
    out = subprocess.run([sys.executable, str(REPO / shim), "--local_rank=0", "--help"], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: radllm {command} "), out.stdout
