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
