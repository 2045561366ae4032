"""report.html: section order, the per-finding bar chart and the learning curves read from a run's metrics.jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from radllm.cli import main
from radllm.errors import RadllmError
from radllm.evaluation.curves import curve_panels, read_run, thin
from radllm.labels import OBSERVATIONS

TRAIN_LOSS = {1: 5.0, 2: 4.0, 3: 9.0, 4: 1.0}  # step 3 is logged again below with 2.0 (a resumed run): the last record wins


def _labels(**values: int | None) -> dict:
    named = {name.lower().replace(" ", "_"): name for name in OBSERVATIONS}
    return {name: None for name in OBSERVATIONS} | {named[k]: v for k, v in values.items()}


def _write(path: Path, records: list[dict], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def _metrics_jsonl(run_dir: Path) -> Path:
    """What radllm.training.run_log.MetricsLog writes: train lines per step, eval lines with nested samples/grounding."""
    records = [{"kind": "train", "step": step, "loss": loss, "lr": 1e-3} for step, loss in TRAIN_LOSS.items()]
    records.append({"kind": "train", "step": 3, "loss": 2.0, "lr": 1e-3})
    for step, f1 in ((2, 0.2), (4, 0.3)):
        records.append({"kind": "eval", "step": step, "loss": 3.0 - step / 4, "targets": 100, "task_loss": {"vqa": 1.0},
                        "samples": {"f1_micro_present": f1, "f1_micro_14": f1 / 2, "contradiction_rate": 0.5 - f1},
                        "text_perplexity": {"perplexity": 2.0 + step, "n_tokens": 50},
                        "grounding": {"report_generation": {"nll_own": 9.0, "gain_nats": step / 10, "frac_better": 0.5 + step / 20}}})
    return _write(run_dir / "metrics.jsonl", records, tail='{"kind": "train", "step": 5, "lo')  # torn by a kill


def test_read_run_flattens_keeps_the_last_record_of_a_step_and_ignores_a_torn_line(tmp_path: Path) -> None:
    run = read_run("stage1", _metrics_jsonl(tmp_path / "stage1").parent)
    assert run.series["train", "loss"] == [(1.0, 5.0), (2.0, 4.0), (3.0, 2.0), (4.0, 1.0)]
    assert run.series["eval", "samples/f1_micro_present"] == [(2.0, 0.2), (4.0, 0.3)]
    assert run.series["eval", "grounding/report_generation/gain_nats"] == [(2.0, 0.2), (4.0, 0.4)]
    panels = curve_panels([run])
    assert [(p.title, p.reference, p.detail) for p in panels] == [
        ("train loss", None, False), ("eval loss (held-out rows)", None, False), ("samples: clinical F1 micro (present)", None, False),
        ("samples: reports that contradict themselves", None, False),  # no side_consistency logged: no panel
        ("held-out text perplexity (pretrained LM task)", None, False),
        ("grounding/report_generation/frac_better", 0.5, False), ("grounding/report_generation/gain_nats", 0.0, False),
        ("grounding/report_generation/nll_own", None, True),  # secondary: folded away on the page
    ]
    with pytest.raises(RadllmError, match="no metrics.jsonl"):
        read_run("x", tmp_path / "nothing")


def test_thin_averages_consecutive_points() -> None:
    points = [(float(i), float(i % 2)) for i in range(10)]
    assert thin(points, 10) == points
    assert thin(points, 5) == [(0.5, 0.5), (2.5, 0.5), (4.5, 0.5), (6.5, 0.5), (8.5, 0.5)]
    assert thin(points, 4) == [(1.0, 1 / 3), (4.0, 2 / 3), (7.0, 1 / 3), (9.0, 1.0)]  # groups of ceil(10/4) = 3


@pytest.fixture()
def page(tmp_path: Path) -> str:
    """Reports of 6 studies: cardiomegaly in 0-2, effusion in 3; the model finds both, the baseline says normal."""
    truth = [_labels(cardiomegaly=1), _labels(cardiomegaly=1), _labels(cardiomegaly=1), _labels(pleural_effusion=1),
             _labels(cardiomegaly=0), _labels(cardiomegaly=0)]
    ids = [f"s{i}" for i in range(len(truth))]
    _write(tmp_path / "refs.jsonl", [{"study_id": s, "report": "r", "labels": t} for s, t in zip(ids, truth)])
    said = ["The heart is enlarged."] * 3 + ["Small left pleural effusion.", "Normal.", "The heart is enlarged."]
    model = _write(tmp_path / "model.jsonl", [{"task": "report", "study_id": s, "report": r} for s, r in zip(ids, said)])
    normal = _write(tmp_path / "normal.jsonl", [{"task": "report", "study_id": s, "report": "Normal."} for s in ids])
    shuffled = _write(tmp_path / "shuffled.jsonl", [{"task": "report", "study_id": s, "report": r} for s, r in zip(ids, said[::-1])])
    _metrics_jsonl(tmp_path / "runs" / "stage1")
    _metrics_jsonl(tmp_path / "runs" / "s2")
    out = tmp_path / "eval"
    assert main(["evaluate", "--ref", str(tmp_path / "refs.jsonl"), "--out", str(out), "--no-meteor", "--bootstrap", "50", "--ce-labels", "labels",
                 "--pred", str(model), "--pred", f"baseline_normal={normal}", "--pred", f"shuffled={shuffled}",
                 "--run-dir", str(tmp_path / "runs" / "stage1"), "--run-dir", f"stage2={tmp_path / 'runs' / 's2'}"]) == 0
    return (out / "report.html").read_text()


def test_page_opens_with_the_headline_and_ends_with_every_metric(page: str) -> None:
    sections = re.findall(r"<section id=(\w+)>", page)
    assert sections == ["headline", "findings", "curves", "samples", "metrics"]
    headline = page[page.index("<section id=headline>"):page.index("<section id=findings>")]
    assert [re.sub("<[^>]+>", "", row) for row in re.findall(r"<tr><td>(.*?)</td>", headline)] == [
        "model", "baseline: always normal", "control: shuffled images", "reference reports",
        "model − baseline: always normal", "model − control: shuffled images"]
    # model: tp 4, fp 1 (s5) -> F1 8/9; always normal: 0; the difference cell carries its interval
    assert "0.889 <span class=ci>[" in headline and "+0.889 <span class=ci>[" in headline
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_findings_chart_has_one_bar_per_observation_with_a_positive_reference(page: str) -> None:
    chart = page[page.index("<section id=findings>"):page.index("<section id=curves>")]
    bars = re.findall(r'<rect class="bar" data-series="([^"]+)" data-category="([^"]+)" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', chart)
    model = [(category, float(width)) for series, category, width in bars if series == "model"]
    assert [category for category, _ in model] == ["Cardiomegaly (3)", "Pleural Effusion (1)"]
    full = 300  # the plot width of radllm.evaluation.svg.bar_chart, values on [0, 1]
    # cardiomegaly tp 3, fp 1 -> F1 6/7; effusion tp 1 -> 1
    assert model == [("Cardiomegaly (3)", pytest.approx(full * 6 / 7, abs=0.1)), ("Pleural Effusion (1)", pytest.approx(full, abs=0.1))]
    assert [s for s, c, _ in bars if c == "Cardiomegaly (3)"] == ["model", "baseline: always normal", "control: shuffled images"]


def test_learning_curves_are_drawn_from_metrics_jsonl(page: str) -> None:
    curves = page[page.index("<section id=curves>"):page.index("<section id=samples>")]
    charts = re.findall(r"<svg.*?</svg>", curves)
    titles = [re.search(r'font-weight="bold">([^<]+)<', chart).group(1) for chart in charts]
    assert titles[:5] == ["train loss", "eval loss (held-out rows)", "samples: clinical F1 micro (present)",
                          "samples: reports that contradict themselves", "held-out text perplexity (pretrained LM task)"]
    assert titles[5:] == ["grounding/report_generation/frac_better", "grounding/report_generation/gain_nats",
                          "grounding/report_generation/nll_own"]
    assert 'class="reference"' in charts[5] and 'class="reference"' not in charts[0]  # chance level of frac_better
    details = curves[curves.index("<details>"):]
    assert "grounding/report_generation/nll_own" in details and "gain_nats" not in details
    lines = re.findall(r'<polyline class="line" data-series="([^"]+)" points="([^"]+)"', charts[0])
    assert [name for name, _ in lines] == ["stage1", "stage2"]
    points = [tuple(map(float, p.split(","))) for p in lines[0][1].split()]
    assert len(points) == len(TRAIN_LOSS)
    xs, ys = zip(*points)
    assert list(xs) == sorted(xs)
    # y grows downwards: the highest loss (5.0 at step 1, the replayed step 3 is 2.0) is the top point, 1.0 the bottom.
    assert ys.index(min(ys)) == 0 and ys.index(max(ys)) == 3 and ys[1] < ys[2]
