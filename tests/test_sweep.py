"""`radllm sweep plan|collect`: each variant's config is what it names, and the collector reads two real tiny runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from launching import run_group
from training_fixtures import make_training_artifacts, train_config_dict

from radllm.cli import main as cli_main
from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.evaluation.sweep import collect_sweep, pareto_chart, plan_sweep
from radllm.training.config import TrainConfig
from radllm.vq.train_config import VQTrainConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _base_config(tmp_path: Path) -> Path:
    """A stage config with paths that need not exist (planning checks values, not files)."""
    return _write(tmp_path / "base.yaml", {
        "run_dir": "placeholder", "tokenizer": "tok", "model": {"init": "pretrained"}, "data": {"shards": "base-shards"},
        "optim": {"lr": 1e-3}, "anchor": {"lambda_reg": 0.1},
    })


def test_plan_writes_one_config_per_variant_with_its_sets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _write(tmp_path / "sweep.yaml", {
        "config": str(_base_config(tmp_path)),
        "sets": ["data.shards=elsewhere", "tasks.weights.text_lm=0.0"],
        "variants": {
            "lambda_0": ["anchor.lambda_reg=0"],
            "lambda_10": ["anchor.lambda_reg=10", "model.init=runs/stage1/{variant}/model"],
            "as_is": [],
        },
    })
    out = tmp_path / "sweep"
    assert cli_main(["sweep", "plan", str(sweep), "--out", str(out), "--set", "data.shards=shards", "--set", "anchor.lambda_reg=0.2"]) == 0
    assert "sbatch --array=0-2 scripts/slurm/sweep.sbatch" in capsys.readouterr().out
    assert (out / "variants.txt").read_text() == "lambda_0\nlambda_10\nas_is\n"
    assert (out / "command").read_text() == "train\n"
    configs = {name: load_config(TrainConfig, out / name / "config.yaml") for name in ("lambda_0", "lambda_10", "as_is")}
    assert [c.anchor.lambda_reg for c in configs.values()] == [0.0, 10.0, 0.2]  # --set before the variant's own
    assert configs["lambda_10"].model.init == "runs/stage1/lambda_10/model"
    assert configs["as_is"].model.init == "pretrained"
    for name, config in configs.items():
        assert config.run_dir == str(out / name) and config.export_path == str(out / name / "model")
        assert config.data.shards == "shards" and config.tasks.weights["text_lm"] == 0.0
    assert json.loads((out / "sweep.json").read_text())["variants"]["lambda_10"][0] == "anchor.lambda_reg=10"

    # Re-planning the same sweep changes nothing; a changed variant over an existing plan is refused.
    before = (out / "lambda_0" / "config.yaml").stat().st_mtime_ns
    plan_sweep(sweep, out, ["data.shards=shards", "anchor.lambda_reg=0.2"])
    assert (out / "lambda_0" / "config.yaml").stat().st_mtime_ns == before
    changed = yaml.safe_load(sweep.read_text())
    changed["variants"]["lambda_0"] = ["anchor.lambda_reg=1"]
    with pytest.raises(RadllmError, match="sweep variant lambda_0: .* exists with another config"):
        plan_sweep(_write(tmp_path / "changed.yaml", changed), out, ["data.shards=shards", "anchor.lambda_reg=0.2"])
    assert load_config(TrainConfig, out / "lambda_0" / "config.yaml").anchor.lambda_reg == 0.0


@pytest.mark.parametrize("variants, message", [
    ({"bad_key": ["anchor.no_such_key=1"]}, "sweep variant bad_key: .*no_such_key"),
    ({"too_strong": ["anchor.lambda_reg=600"]}, r"sweep variant too_strong: anchor.lambda_reg = 600.0 with optim.lr = 0.001"),
    ({"a/b": []}, "variant name 'a/b'"),
    ({"no_equals": ["anchor.lambda_reg"]}, "expected a list of KEY=VALUE"),
    ({}, "variants must map at least one name"),
])
def test_plan_refuses_a_bad_variant_before_writing_anything(tmp_path: Path, variants: dict, message: str) -> None:
    sweep = _write(tmp_path / "sweep.yaml", {"config": str(_base_config(tmp_path)), "variants": variants})
    with pytest.raises(RadllmError, match=message):
        plan_sweep(sweep, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_plan_a_vq_sweep(tmp_path: Path) -> None:
    sweep = _write(tmp_path / "sweep.yaml", {
        "command": "vq-train", "config": str(REPO / "configs" / "demo" / "vq.yaml"),
        "variants": {"no_grad": ["loss.grad_weight=0"], "no_feature": ["loss.feature_weight=0"]},
    })
    assert plan_sweep(sweep, tmp_path / "vq") == ["no_grad", "no_feature"]
    config = load_config(VQTrainConfig, tmp_path / "vq" / "no_grad" / "config.yaml")
    assert config.loss.grad_weight == 0.0 and config.loss.feature_weight == 1.0
    assert config.output_dir == str(tmp_path / "vq" / "no_grad") and config.export_path == str(tmp_path / "vq" / "no_grad" / "vq")
    assert (tmp_path / "vq" / "command").read_text() == "vq-train\n"
    with pytest.raises(RadllmError, match="command = 'sft'"):
        plan_sweep(_write(tmp_path / "bad.yaml", {"command": "sft", "config": "x.yaml", "variants": {"a": []}}), tmp_path / "x")


@pytest.fixture(scope="module")
def two_tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A planned sweep of two variants (λ 0 and 5) of a tiny stage-1 config, each trained for real."""
    root = tmp_path_factory.mktemp("sweep-runs")
    art = make_training_artifacts(root / "artifacts")
    config = train_config_dict(art, "placeholder", schedule={"max_steps": 2, "log_every": 1, "eval_every": 2, "save_every": 2, "keep_checkpoints": 1},
                               logging={"text_perplexity_studies": 4, "grounding_studies": 4})
    sweep = _write(root / "sweep.yaml", {"config": str(_write(root / "base.yaml", config)),
                                         "variants": {"lambda_0": ["anchor.lambda_reg=0"], "lambda_5": ["anchor.lambda_reg=5"]}})
    out = root / "sweep"
    plan_sweep(sweep, out)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    for name in ("lambda_0", "lambda_5"):
        result = run_group([str(BIN / "radllm"), "train", "--config", str(out / name / "config.yaml"), "--no-progress"], env=env, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
    return out


def _last_eval(run_dir: Path) -> dict:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("kind") == "eval"][-1]


def test_collect_reads_each_runs_last_evaluation_and_its_evaluate_metrics(two_tiny_runs: Path, tmp_path: Path) -> None:
    out = two_tiny_runs
    # One variant also has radllm evaluate's metrics.json (its format: a flat JSON object).
    (out / "lambda_5" / "eval").mkdir(exist_ok=True)
    (out / "lambda_5" / "eval" / "metrics.json").write_text(json.dumps({
        "report/ce_f1_micro_present_strict": 0.25, "report/n": 3, "note": "text",
        "report/diff/recipe/ce_f1_micro_present_strict": -0.25,  # paired against the recipe's reports, with an interval
        "report/diff/recipe/ce_f1_micro_present_strict/ci_low": -0.4, "report/diff/recipe/ce_f1_micro_present_strict/ci_high": -0.1}))
    # A reference row (the recipe, trained elsewhere): an evaluation and radllm perplexity's JSON only.
    reference = tmp_path / "recipe"
    (reference / "eval").mkdir(parents=True)
    (reference / "eval" / "metrics.json").write_text(json.dumps({"report/ce_f1_micro_present_strict": 0.5}))
    (reference / "eval" / "perplexity.json").write_text(json.dumps({"perplexity": 1.8, "nll": 0.59, "model": "m"}))
    assert cli_main(["sweep", "collect", str(out), "--out", str(tmp_path), "--reference", f"recipe={reference}"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["order"] == ["recipe", "lambda_0", "lambda_5"]
    assert summary["variants"]["recipe"] == {"sets": [], "status": "evaluated", "reference": True, "metrics": {
        "eval/report/ce_f1_micro_present_strict": 0.5, "perplexity/perplexity": 1.8, "perplexity/nll": 0.59}}
    for name in ("lambda_0", "lambda_5"):
        last = _last_eval(out / name)
        row = summary["variants"][name]
        assert last["step"] == 2
        assert row["metrics"]["run/loss"] == pytest.approx(last["loss"])
        assert row["metrics"]["run/text_perplexity/perplexity"] == pytest.approx(last["text_perplexity"]["perplexity"])
        assert row["metrics"]["run/grounding/report_generation/gain_nats"] == pytest.approx(last["grounding"]["report_generation"]["gain_nats"])
    assert summary["variants"]["lambda_0"]["status"] == "trained" and summary["variants"]["lambda_5"]["status"] == "evaluated"
    assert summary["variants"]["lambda_5"]["metrics"]["eval/report/ce_f1_micro_present_strict"] == 0.25
    assert "eval/note" not in summary["variants"]["lambda_5"]["metrics"]
    assert summary["variants"]["lambda_5"]["sets"] == ["anchor.lambda_reg=5"]
    # L2 pulls towards the pretrained weights: the two runs differ.
    assert summary["variants"]["lambda_0"]["metrics"]["run/loss"] != summary["variants"]["lambda_5"]["metrics"]["run/loss"]

    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[0].startswith("| variant | sets | status | strict clinical F1 | strict F1 − recipe (paired) |")
    assert table[2].startswith("| recipe | (reference) | evaluated | 0.5 | – |")
    assert table[3].startswith("| lambda_0 | `anchor.lambda_reg=0` | trained | – | – |")
    assert table[4].startswith("| lambda_5 | `anchor.lambda_reg=5` | evaluated | 0.25 | -0.25 [-0.4, -0.1] |")
    # The Pareto chart: x is the whole-split perplexity, which only the reference has: the only point.
    svg = (tmp_path / "pareto.svg").read_text()
    assert 'data-series="recipe"' in svg and 'data-series="lambda_5"' not in svg
    assert "ce_f1_micro_present_strict against perplexity/perplexity" in svg
    # Without the reference, the runs' own perplexity is the x axis: lambda_5 has both coordinates.
    svg = pareto_chart({name: row for name, row in summary["variants"].items() if name != "recipe"})
    assert 'data-series="lambda_5"' in svg and 'data-series="lambda_0"' not in svg
    assert "against run/text_perplexity/perplexity" in svg
    with pytest.raises(RadllmError, match="has the name of a variant"):
        collect_sweep(out, tmp_path, {"lambda_0": reference})


def test_collect_lists_variants_not_run_yet_and_refuses_an_unplanned_directory(tmp_path: Path) -> None:
    sweep = _write(tmp_path / "sweep.yaml", {"config": str(_base_config(tmp_path)), "variants": {"a": [], "b": ["anchor.lambda_reg=0"]}})
    plan_sweep(sweep, tmp_path / "sweep")
    summary = collect_sweep(tmp_path / "sweep")
    assert {row["status"] for row in summary["variants"].values()} == {"not run"} and summary["columns"] == []
    assert "| a | (the config as is) | not run |" in (tmp_path / "sweep" / "summary.md").read_text()
    with pytest.raises(RadllmError, match="no variants.txt; plan the sweep first"):
        collect_sweep(tmp_path / "elsewhere")


def test_sweep_help() -> None:
    for args in (["sweep", "--help"], ["sweep", "plan", "--help"], ["sweep", "collect", "--help"]):
        result = subprocess.run([str(BIN / "radllm"), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "usage: radllm sweep" in result.stdout
