"""The typed config loader: defaults ← YAML ← overrides, strict about keys and types."""

from dataclasses import dataclass, field

import pytest
import yaml

from radllm.config import load_config, save_config
from radllm.errors import RadllmError


@dataclass
class OptimOptions:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class RunOptions:
    name: str = "run"
    optim: OptimOptions = field(default_factory=OptimOptions)
    tags: list[str] = field(default_factory=list)
    init_from: str | None = None


def test_merge_order_defaults_file_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: from-file\noptim:\n  lr: 0.5\n")
    cfg = load_config(RunOptions, path, ["optim.steps=7", "tags=[a,b]"])
    assert cfg == RunOptions(name="from-file", optim=OptimOptions(lr=0.5, steps=7), tags=["a", "b"])
    assert isinstance(cfg.optim, OptimOptions)


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lrr: 0.5\n")
    with pytest.raises(RadllmError, match=r"run\.yaml.*optim\.lrr"):
        load_config(RunOptions, path)


def test_wrong_type_in_override_is_clear():
    with pytest.raises(RadllmError, match=r"optim\.steps"):
        load_config(RunOptions, None, ["optim.steps=many"])


def test_override_without_equals_sign():
    with pytest.raises(RadllmError, match="key=value"):
        load_config(RunOptions, None, ["optim.steps"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(RadllmError, match="does not exist"):
        load_config(RunOptions, tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(RadllmError, match="mapping"):
        load_config(RunOptions, bad)


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(RunOptions, None, ["name=x", "init_from=/data/model"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["init_from"] == "/data/model"
    assert load_config(RunOptions, tmp_path / "out" / "config.yaml") == cfg
