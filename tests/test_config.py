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


@pytest.mark.parametrize("text, key", [("optim:\n  lr: .nan\n", "optim.lr"), ("optim:\n  lr: .inf\n", "optim.lr"), ("optim:\n  lr: -.inf\n", "optim.lr")])
def test_non_finite_numbers_are_refused_with_their_key(tmp_path, text, key):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(RadllmError, match=rf"run\.yaml: {key} = -?(nan|inf); expected a finite number"):
        load_config(RunOptions, path)
    with pytest.raises(RadllmError, match=rf"{key} = nan"):
        load_config(RunOptions, None, ["optim.lr=nan"])


# Every real run config: the values a hostile or careless YAML can carry that a plain `< 0` check passes.
RANGE_CASES = [
    ("radllm.training.config", "TrainConfig", ["run_dir=r", "tokenizer=t", "model.architecture=a", "data.shards=s"], [
        ("optim.lr=.nan", "optim.lr = nan"), ("optim.lr=inf", "optim.lr = inf"), ("optim.beta1=2", "optim.beta1 = 2.0"),
        ("optim.beta2=-0.1", "optim.beta2 = -0.1"), ("optim.eps=-1", "optim.eps = -1.0"), ("optim.eps=0", "optim.eps = 0.0"),
        ("optim.grad_clip=.nan", "optim.grad_clip = nan"), ("anchor.lambda_reg=.nan", "anchor.lambda_reg = nan"),
        ("tasks.weights.vqa=.inf", "tasks.weights.vqa = inf"),
    ]),
    ("radllm.vq.train_config", "VQTrainConfig", ["data.manifest=m", "output_dir=o"], [
        ("optim.lr=nan", "optim.lr = nan"), ("optim.beta1=1", "optim.beta1=1.0"), ("optim.grad_clip=0", "optim.grad_clip=0.0"),
        ("optim.weight_decay=-1", "optim.weight_decay=-1.0"), ("loss.grad_weight=.nan", "loss.grad_weight = nan"),
    ]),
    ("radllm.encoders.train_config", "CXREncoderTrainConfig", ["data.manifest=m", "out_dir=o"], [("optim.lr=.inf", "optim.lr = inf")]),
]


@pytest.mark.parametrize(
    "module, schema, base, override, message",
    [(m, s, b, o, msg) for m, s, b, cases in RANGE_CASES for o, msg in cases],
)
def test_run_configs_range_check_every_numeric_option(module, schema, base, override, message):
    import importlib

    cls = getattr(importlib.import_module(module), schema)
    with pytest.raises(RadllmError, match=message.replace(".", r"\.")):
        config = load_config(cls, None, [*base, override])
        getattr(config, "validate", lambda: None)()
