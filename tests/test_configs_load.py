"""Every YAML under configs/ loads into its typed config (STYLE: every option is read).

A config directory maps to its schema by the file's stem; a new YAML whose kind is unknown fails
here instead of drifting out of date unnoticed. Sweep files (configs/demo/ablations/) are planned:
every variant's merged config loads into its trainer's schema and validates.
"""

from pathlib import Path

import pytest

from radllm.config import load_config
from radllm.evaluation.sweep import plan_sweep
from radllm.encoders.train_config import CXREncoderTrainConfig
from radllm.training.config import TrainConfig
from radllm.vq.train_config import VQTrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEMO_TRAIN_STEPS = {"pretrain", "stage1", "stage2"}  # configs/demo/*.yaml run by `deepspeed radllm/train.py`


SWEEP_DIRS = {"ablations"}  # sweep files (radllm sweep plan), not run configs


def _schema_for(path: Path) -> type:
    if path.parent.name == "train" or (path.parent.name == "demo" and path.stem in DEMO_TRAIN_STEPS):
        return TrainConfig
    if path.stem.startswith("cxr_encoder"):
        return CXREncoderTrainConfig
    if path.stem.startswith("vq") or path.parent.name == "vq":
        return VQTrainConfig
    raise AssertionError(f"{path}: no typed config schema is registered for this YAML")


ALL_YAML = sorted(CONFIGS.rglob("*.yaml"))


def test_configs_exist():
    assert ALL_YAML, "configs/ holds no YAML"


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_strictly(path, tmp_path, monkeypatch):
    if path.parent.name in SWEEP_DIRS:
        monkeypatch.chdir(CONFIGS.parent)  # sweep files name their config relative to the repository
        assert plan_sweep(path, tmp_path / "plan")  # every variant loaded and validated as its trainer would
        return
    config = load_config(_schema_for(path), path)
    assert config is not None
    if isinstance(config, TrainConfig):
        config.validate()  # values too, not only keys and types (paths are checked at run time)
