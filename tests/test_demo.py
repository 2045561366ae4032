"""The reduced demo: `make demo` end to end with small numbers (same targets, same commands).

Runs every step of the Makefile's demo into a temporary DEMO_DIR: phantoms, CXR encoder, VQ-GAN,
SentencePiece tokenizer, shards, text pre-training, stage 1, stage 2 (two ranks through the real
deepspeed launcher on CPU), generation of reports / images / VQA on the test split (reports and VQA
also as the shuffled-image control), baselines, perplexity and evaluation (with the learning curves
of both stages), and the same generation, baselines and evaluation on an unseen phantom set of
another seed; then checks the outputs, and that a second `make demo` runs no step again. Then
`make ablations` with one variant of both stages (sweep files written here), scored and collected
against the demo model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from launching import run_group

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent

SMALL = {
    "DEMO_N": "30",
    "DEMO_SIZE": "128",
    "DEMO_VOCAB": "400",
    "DEMO_ENCODER_SET": "optim.epochs=1 model.widths=[4,8,8,8,8]",
    "DEMO_VQ_SET": "schedule.max_steps=2 schedule.eval_every=2 schedule.save_every=2 data.eval_images=4 optim.batch_size=2",
    "DEMO_PRETRAIN_SET": "schedule.max_steps=2 data.studies_per_batch=8 optim.micro_batch_size=1",
    "DEMO_STAGE1_SET": "schedule.max_steps=2 data.studies_per_batch=4 optim.micro_batch_size=1",
    "DEMO_STAGE2_SET": "schedule.max_steps=2 data.studies_per_batch=4 optim.micro_batch_size=1",
    "DEMO_REPORT_ARGS": "--max-new-tokens 24 --candidates 2 --temperature 0.7 --draft-unit sentence",
    "DEMO_UNSEEN_N": "10",
}
STEPS = ["phantoms", "cxr_encoder", "vq", "tokenizer", "shards", "pretrain", "stage1", "stage2",
         "generate_reports", "generate_images", "generate_vqa", "generate_reports_shuffled", "generate_vqa_shuffled",
         "baselines", "perplexity_pretrained", "perplexity_stage2_l2", "evaluate",
         "unseen_phantoms", "unseen_shards", "unseen_generate_reports", "unseen_generate_images", "unseen_generate_vqa",
         "unseen_baselines", "unseen_evaluate"]


def _make(demo_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    # -o: the environment running the tests is the installed venv; never reinstall it from the test.
    args = ["make", "-C", str(REPO), "-o", f"{VENV}/.installed", f"VENV={VENV}", f"DEMO_DIR={demo_dir}",
            f"DEMO_PORT={29600 + os.getpid() % 300}", *(f"{k}={v}" for k, v in SMALL.items()), *extra]
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    return run_group(args, env=env)


@pytest.mark.slow
def test_reduced_demo_runs_every_step_and_reruns_nothing(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    run = _make(demo, "demo")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    timings = [line.split("\t")[0] for line in (demo / "timings.tsv").read_text().splitlines()]
    assert sorted(timings) == sorted(STEPS)
    metrics = json.loads((demo / "eval" / "metrics.json").read_text())
    for key in ("report/ce_f1_micro_present", "report/baseline_normal/ce_f1_micro_present",
                "report/baseline_nearest/ce_f1_micro_present", "image/gen_clinical_agreement", "vqa/accuracy",
                "perplexity/pretrained", "perplexity/stage2_l2",
                "report/shuffled/ce_f1_micro_present", "vqa/shuffled/accuracy", "report/ce_f1_micro_present/ci_low",
                "report/diff/shuffled/ce_f1_micro_present/ci_high", "report/diff/baseline_nearest/ce_f1_micro_present",
                "vqa/diff/shuffled/accuracy", "report/ce_f1_micro_present_strict", "report/contradiction_rate",
                "report/repeat_rate", "report/side_consistency", "report/distinct_fraction", "report/reference/contradiction_rate",
                "report/baseline_probe/ce_f1_micro_present", "report/diff/baseline_probe/ce_f1_micro_present_strict",
                "vqa/baseline_prior/auroc_macro", "vqa/diff/baseline_prior/auroc_macro", "image/gen_clinical_f1_micro",
                "image/baseline_absent/gen_clinical_f1_micro", "image/baseline_normal/gen_clinical_f1_micro",
                "image/diff/baseline_normal/gen_clinical_f1_micro", "report/side_match_n"):
        assert key in metrics, key
    unseen = json.loads((demo / "unseen" / "eval" / "metrics.json").read_text())
    assert unseen["report/n_studies"] == 10 and "report/baseline_probe/ce_f1_micro_present_strict" in unseen
    shuffled = [json.loads(line) for line in (demo / "generate" / "reports_shuffled.jsonl").read_text().splitlines()]
    assert len(shuffled) == 3 and all(r["image_from"] != r["study_id"] for r in shuffled)
    assert metrics["report/n_studies"] == 3  # the test split of 30 phantoms
    page = (demo / "eval" / "report.html").read_text()
    assert page.index("<section id=headline>") < page.index("<section id=curves>") < page.index("<section id=samples>")
    assert "stage1" in page and "control: shuffled images" in page
    assert (demo / "model" / "radllm.json").is_file() and (demo / "vq" / "model.safetensors").is_file()
    assert (demo / "shards" / "index.json").is_file()
    assert "baseline: always normal" in run.stdout and "control: shuffled images" in run.stdout and "total:" in run.stdout
    assert "reports, unseen set (10 studies)" in run.stdout
    drafted = [json.loads(line) for line in (demo / "generate" / "reports.jsonl").read_text().splitlines()]
    assert all((r["candidates"], r["draft_unit"]) == (2, "sentence") for r in drafted)

    dry = _make(demo, "-n", "demo")  # everything is up to date: only the table would be printed
    assert dry.returncode == 0
    commands = [line for line in dry.stdout.splitlines() if line.strip() and not line.startswith("make")]
    assert len(commands) == 1 and "demo-table" in commands[0], dry.stdout

    # make ablations: one variant of each sweep (λ = 0 in both stages; the joint mix), tiny sweep files.
    sweeps = {}
    for stage in ("stage1", "stage2"):
        sweeps[stage] = tmp_path / f"ablation_{stage}.yaml"
        sweeps[stage].write_text(f"config: configs/demo/{stage}.yaml\nvariants:\n  no_l2: [anchor.lambda_reg=0]\n")
    sweeps["joint"] = tmp_path / "ablation_joint.yaml"
    sweeps["joint"].write_text("config: configs/demo/stage1.yaml\nvariants:\n  joint: ['tasks.joint=[{stage: 1, share: 3}, {stage: 2, share: 1}]']\n")
    ablations = _make(demo, "ablations", f"ABLATIONS_STAGE1={sweeps['stage1']}", f"ABLATIONS_STAGE2={sweeps['stage2']}",
                      f"ABLATIONS_JOINT={sweeps['joint']}", "ABLATION_REPORT_ARGS=--max-new-tokens 24")
    assert ablations.returncode == 0, ablations.stdout[-4000:] + ablations.stderr[-4000:]
    arms = demo / "ablations" / "anti_forgetting"
    for stage in ("stage1", "stage2"):  # the arm drops L2 in both stages, and only there
        assert "lambda_reg: 0.0" in (arms / stage / "no_l2" / "config.yaml").read_text()
        assert "lambda_reg: 0.0" not in (demo / stage / "config.yaml").read_text()
    assert "init: " + str(arms / "stage1" / "no_l2" / "model") in (arms / "stage2" / "no_l2" / "config.yaml").read_text()
    for summary_path, arm in ((arms / "summary.json", "no_l2"), (demo / "ablations" / "joint" / "summary.json", "joint")):
        summary = json.loads(summary_path.read_text())
        assert summary["order"] == ["recipe", arm]
        for name in ("recipe", arm):
            row = summary["variants"][name]
            assert row["status"] == "evaluated" and "eval/report/ce_f1_micro_present_strict" in row["metrics"]
            assert "perplexity/perplexity" in row["metrics"] and "run/loss" in row["metrics"]
        assert "eval/report/diff/recipe/ce_f1_micro_present_strict/ci_low" in summary["variants"][arm]["metrics"]  # paired
        assert (summary_path.parent / "pareto.svg").read_text().count("data-series=") == 2
    assert "| no_l2 | `anchor.lambda_reg=0` | evaluated |" in ablations.stdout  # the tables are printed
    assert "| joint | `tasks.joint=" in ablations.stdout
