"""`radllm demo-table` and the evaluate options the demo relies on: the ``_present`` observation
set, several unnamed prediction files holding different tasks, and ``--perplexity`` files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radllm.cli import main
from radllm.clinical_efficacy import clinical_efficacy
from radllm.errors import RadllmError
from radllm.evaluation.demo_table import format_table, read_timings
from radllm.labels import OBSERVATIONS


def _labels(**values: int | None) -> dict:
    named = {name.lower().replace(" ", "_"): name for name in OBSERVATIONS}
    return {name: None for name in OBSERVATIONS} | {named[k]: v for k, v in values.items()}


def test_present_set_pools_only_observations_with_a_positive_reference() -> None:
    reference = [_labels(cardiomegaly=1, edema=0), _labels(pneumothorax=1), _labels(cardiomegaly=0)]
    predicted = [_labels(cardiomegaly=1), _labels(cardiomegaly=1, edema=1), _labels(pneumothorax=1)]
    ce = clinical_efficacy(predicted, reference, "positive")
    # Present: cardiomegaly (tp 1, fp 1) and pneumothorax (tp 0, fp 1, fn 1); edema has no positive
    # reference, so its false positive counts in the 14 but not in the present set.
    assert ce["ce_n_present"] == 2
    assert ce["ce_f1_micro_present"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert ce["ce_f1_micro_14"] == pytest.approx(2 * 1 / (2 * 1 + 3 + 1))
    assert ce["ce_f1_macro_present"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_present_set_is_empty_without_positive_references() -> None:
    ce = clinical_efficacy([_labels(edema=1)], [_labels(edema=0)], "positive")
    assert ce["ce_n_present"] == 0 and ce["ce_f1_micro_present"] == 0.0 and ce["ce_f1_macro_present"] == 0.0


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    refs = [
        {"study_id": "a", "report": "The heart is enlarged.", "labels": _labels(cardiomegaly=1)},
        {"study_id": "b", "report": "No acute abnormality.", "labels": _labels(cardiomegaly=0)},
    ]
    (tmp_path / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    reports = [{"task": "report", "study_id": "a", "report": "Cardiomegaly."}, {"task": "report", "study_id": "b", "report": "Cardiomegaly."}]
    (tmp_path / "reports.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reports))
    vqa = [{"task": "vqa", "study_id": s, "observation": "Cardiomegaly", "question": "q", "answer": a, "p_yes": p}
           for s, a, p in (("a", "yes", 0.9), ("b", "yes", 0.6))]
    (tmp_path / "vqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in vqa))
    ppl = {"model": "m", "shards": "s", "split": "test", "n_studies": 2, "n_tokens": 10, "nll": 0.5, "perplexity": 1.6487}
    (tmp_path / "ppl.json").write_text(json.dumps(ppl))
    return tmp_path


def test_unnamed_files_of_different_tasks_and_perplexity_share_one_metrics_file(files: Path) -> None:
    out = files / "eval"
    args = ["evaluate", "--ref", str(files / "refs.jsonl"), "--out", str(out), "--no-meteor", "--ce-labels", "labels",
            "--pred", str(files / "reports.jsonl"), "--pred", str(files / "vqa.jsonl"), "--perplexity", f"pretrained={files / 'ppl.json'}"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["report/ce_f1_micro_present"] == pytest.approx(2 / 3)  # tp 1, fp 1 on cardiomegaly
    assert metrics["vqa/accuracy"] == pytest.approx(0.5)
    assert metrics["vqa/auroc_micro"] == pytest.approx(1.0)
    assert metrics["perplexity/pretrained"] == pytest.approx(1.6487) and metrics["perplexity/pretrained/n_tokens"] == 10
    assert "perplexity" in (out / "report.html").read_text()


def test_two_files_with_the_same_task_or_a_bad_perplexity_file_exit_2(files: Path, capsys) -> None:
    base = ["evaluate", "--ref", str(files / "refs.jsonl"), "--out", str(files / "bad"), "--no-meteor"]
    assert main([*base, "--pred", str(files / "reports.jsonl"), "--pred", str(files / "reports.jsonl")]) == 2
    assert "both hold report records" in capsys.readouterr().err
    assert main([*base, "--pred", str(files / "reports.jsonl"), "--perplexity", f"x={files / 'refs.jsonl'}"]) == 2
    assert "refs.jsonl: not valid JSON" in capsys.readouterr().err


def test_table_places_each_figure_and_marks_missing_ones() -> None:
    metrics = {
        "report/n_studies": 200, "report/ce_f1_micro_present_strict": 0.75, "report/ce_f1_micro_present": 0.8125,
        "report/baseline_normal/ce_f1_micro_present_strict": 0.25, "report/baseline_probe/ce_f1_micro_present_strict": 0.5,
        "report/shuffled/ce_f1_micro_present_strict": 0.3, "report/contradiction_rate": 0.125, "report/reference/contradiction_rate": 0.0,
        "report/ce_f1_micro_present_strict/ci_low": 0.7, "report/ce_f1_micro_present_strict/ci_high": 0.8,
        "report/diff/shuffled/ce_f1_micro_present_strict": 0.45, "report/diff/shuffled/ce_f1_micro_present_strict/ci_low": 0.4,
        "report/diff/shuffled/ce_f1_micro_present_strict/ci_high": 0.5, "report/diff/baseline_normal/ce_f1_micro_present_strict": 0.5,
        "vqa/auroc_macro": 0.8, "vqa/auroc_macro/ci_low": 0.7, "vqa/auroc_macro/ci_high": 0.85, "vqa/baseline_prior/auroc_macro": 0.5,
        "vqa/diff/baseline_prior/auroc_macro": 0.3, "perplexity/pretrained": 2.0,
        "perplexity/stage2_l2": 2.25, "image/gen_clinical_agreement": None, "image/baseline_absent/gen_clinical_f1_micro": 0.0,
        "eval/bootstrap": 1000,
    }
    unseen = {"report/n_studies": 50, "report/ce_f1_micro_present_strict": 0.625, "vqa/auroc_macro": 0.75}
    lines = format_table(metrics, {"phantoms": 30.0, "vq": 600.0}, unseen).splitlines()
    blank = [i for i, line in enumerate(lines) if not line]
    test_block, unseen_block = lines[:blank[0]], lines[blank[0] + 1:blank[1]]
    row = {line.split("  ")[0]: line.split() for line in test_block[1:]}
    columns = ["strict", "CheXpert", "w/o", "macro", "findings", "contradicts", "repeats", "agrees", "right", "distinct"]
    assert [c for c in columns if c in test_block[0]] == columns and "200 studies" in test_block[0]
    assert row["model (stage 2, L2)"][-10:] == ["0.750", "0.812", "-", "-", "-", "0.125", "-", "-", "-", "-"]
    assert row["baseline: code probe in a template"][-10] == "0.500" and row["reference reports"][-10:][5] == "0.000"
    assert "baseline: nearest train study by codes" not in row  # not given: no line
    unseen_rows = {line.split("  ")[0]: line.split() for line in unseen_block[1:]}
    assert "50 studies" in unseen_block[0] and unseen_rows["model (stage 2, L2)"][-10] == "0.625"
    intervals = lines[blank[1] + 1:blank[2]]
    assert "1000 resamples" in intervals[0]
    assert intervals[1].endswith("[0.700, 0.800]")  # the model's own interval; no difference with itself
    ci = {line.split("  ")[0]: line.split() for line in intervals[2:]}
    assert ci["control: shuffled images"][-3:] == ["+0.450", "[+0.400,", "+0.500]"]
    assert ci["baseline: always normal"][-3:] == ["-", "+0.500", "-"]  # a difference without an interval
    row = {line.split("  ")[0]: line.split() for line in lines[blank[3] + 1:]}
    assert row["VQA AUROC macro"][-4:] == ["0.800", "[0.700,", "0.850]", "0.750"]  # test with interval, then unseen
    assert row["VQA AUROC macro: model - prior"][-2:] == ["+0.300", "-"]
    assert row["images: agreement with requested findings"][-2:] == ["-", "-"]  # null in metrics.json
    assert row["images: the same, an image showing nothing"][-2:] == ["0.000", "-"]
    assert row["report perplexity: the demo model (L2 and text replay)"][-2] == "2.250"
    assert lines[-2] == "step wall time (s): phantoms 30 | vq 600" and lines[-1] == "total: 10.5 min"


def test_timings_keep_the_last_run_of_a_step_and_reject_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "timings.tsv"
    path.write_text("vq\t600\nstage1\t100\n\nstage1\t90\n")
    assert read_timings(path) == {"vq": 600.0, "stage1": 90.0}
    path.write_text("vq 600\n")
    with pytest.raises(RadllmError, match="line 1"):
        read_timings(path)


def test_cli_prints_the_table_and_rejects_a_missing_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"vqa/auroc_macro": 0.75}))
    assert main(["demo-table", "--metrics", str(tmp_path / "metrics.json")]) == 0
    assert "0.750" in capsys.readouterr().out
    assert main(["demo-table", "--metrics", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
