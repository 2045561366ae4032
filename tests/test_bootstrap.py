"""Paired bootstrap of `radllm evaluate`: resampling, the vectorised statistics against hand-computed
values and naive loops, the enumerated distribution of a 3-study case, and the evaluate keys."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from radllm.cli import main
from radllm.encoders.metrics import binary_auroc
from radllm.evaluation.bootstrap import auroc, evaluate_resamples, micro_f1, percentile_interval, point_value, ratio, resample_weights
from radllm.evaluation.clinical import averaged_scores, confusion_tables, pair_counts
from radllm.evaluation.intervals import Outcomes, paired_differences, report_statistics
from radllm.labels import OBSERVATIONS


def test_resample_weights_are_draw_counts_and_a_function_of_the_seed() -> None:
    weights = resample_weights(7, 500, seed=3)
    assert weights.shape == (500, 7) and (weights.sum(axis=1) == 7).all() and (weights >= 0).all()
    assert (resample_weights(7, 500, seed=3) == weights).all() and not (resample_weights(7, 500, seed=4) == weights).all()
    assert abs(weights.mean() - 1.0) < 1e-12 and 0.8 < weights.var() < 1.0  # multinomial(7, 1/7): variance 6/7


def test_micro_f1_is_recomputed_from_summed_counts_hand_computed() -> None:
    counts = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 3]])  # (tp, fp, fn) of studies a, b, c
    f1 = micro_f1(counts)(np.array([[1, 1, 1], [2, 1, 0], [0, 0, 3], [0, 3, 0]]))
    # all once: tp 1, fp 1, fn 3 -> 2/(2+1+3); a twice + b: tp 2, fp 1 -> 4/5; only c or only b: tp 0 -> 0
    assert f1 == pytest.approx([2 / 6, 4 / 5, 0.0, 0.0])
    # A mean of per-study F1 would give (1 + 0 + 0) / 3 for the first row: micro pools the counts instead.
    assert point_value(micro_f1(counts), 3) == pytest.approx(1 / 3)


def test_weighted_auroc_and_ratio_hand_computed() -> None:
    # study 0: one positive at 0.9; study 1: a negative at 0.5; study 2: a positive at 0.5 (tied with the negative)
    statistic = auroc(np.array([0, 1, 2]), np.array([0.9, 0.5, 0.5]), np.array([1, 0, 1]))
    values = statistic(np.array([[1, 1, 1], [2, 1, 0], [2, 0, 1]]))
    # once each: 0.9 > 0.5 (1) + tie (0.5) over 2 pairs; study 0 twice: (2 + 0) / 2 pairs; no negative: undefined
    assert values[:2] == pytest.approx([1.5 / 2, 1.0]) and np.isnan(values[2])
    accuracy = ratio(np.array([1, 0, 2]), np.array([1, 2, 2]))(np.array([[1, 1, 1], [3, 0, 0], [0, 3, 0]]))
    assert accuracy == pytest.approx([3 / 5, 1.0, 0.0])


def test_vectorised_statistics_equal_naive_loops_over_expanded_resamples() -> None:
    rng = np.random.default_rng(0)
    n, names = 40, list(OBSERVATIONS[:5])
    labels = [{name: int(v) for name, v in zip(names, rng.choice([1, 0, -1], size=len(names)))} for _ in range(2 * n)]
    predicted, reference = labels[:n], labels[n:]
    counts = pair_counts(predicted, reference, names, "positive")  # [n, 5, 4]
    items = [(i, round(float(rng.uniform()), 1), int(rng.integers(0, 2))) for i in range(n) for _ in range(3)]  # 3 a study, ties
    study_of, scores, targets = (np.array(column) for column in zip(*items))
    weights = resample_weights(n, 60, seed=1)
    f1 = evaluate_resamples(micro_f1(counts.sum(axis=1)), weights)
    areas = evaluate_resamples(auroc(study_of, scores, targets), weights)
    for row, w in enumerate(weights):
        drawn = [i for i in range(n) for _ in range(w[i])]
        tables = confusion_tables([predicted[i] for i in drawn], [reference[i] for i in drawn], names, "positive")
        assert f1[row] == pytest.approx(averaged_scores(tables)["f1_micro"], abs=1e-12)
        expanded = [(s, t) for i, s, t in items for _ in range(w[i])]
        assert areas[row] == pytest.approx(binary_auroc(np.array([s for s, _ in expanded]), np.array([t for _, t in expanded])), abs=1e-12)


def test_interval_of_three_studies_matches_the_enumerated_resamples() -> None:
    """Model: a right, b a false alarm, c a miss; baseline: misses a and c, silent on b -> its F1 is 0 in every resample."""
    model = Outcomes(report={"a": _counts(tp=1), "b": _counts(fp=1), "c": _counts(fn=1)})
    baseline = Outcomes(report={"a": _counts(fn=1), "b": _counts(), "c": _counts(fn=1)})
    found = paired_differences(model, baseline, "base", resamples=4000, seed=0)
    assert found["report/diff/base/n_studies"] == 3
    assert found["report/diff/base/ce_f1_micro_present"] == pytest.approx(2 / 4)  # model tp 1, fp 1, fn 1; baseline 0
    # All 27 equally likely resamples: the difference is 2k_a / (2k_a + k_b + k_c), 0 when a is never drawn (8/27 > 2.5 %)
    # and 1 when only a is drawn (1/27 > 2.5 %), so the 95 % interval is exactly [0, 1].
    exact = [2 * t.count(0) / (2 * t.count(0) + t.count(1) + t.count(2)) if t.count(0) else 0.0
             for t in itertools.product(range(3), repeat=3)]
    assert (found["report/diff/base/ce_f1_micro_present/ci_low"], found["report/diff/base/ce_f1_micro_present/ci_high"]) == (0.0, 1.0)
    study = ["a", "b", "c"]
    statistic = report_statistics(model, study)["ce_f1_micro_present"]
    values = evaluate_resamples(statistic, resample_weights(3, 4000, seed=0))
    assert values.mean() == pytest.approx(np.mean(exact), abs=4 * np.std(exact) / np.sqrt(4000))
    assert (values == 0).mean() == pytest.approx(8 / 27, abs=0.03)


def test_a_set_compared_with_itself_has_a_zero_interval() -> None:
    rng = np.random.default_rng(5)
    outcomes = Outcomes(report={f"s{i}": rng.integers(0, 2, size=(len(OBSERVATIONS), 4)) for i in range(30)})
    found = paired_differences(outcomes, outcomes, "same", resamples=200, seed=0)
    assert [found[f"report/diff/same/ce_f1_micro_present{s}"] for s in ("", "/ci_low", "/ci_high")] == [0.0, 0.0, 0.0]


def test_percentile_interval_skips_undefined_resamples() -> None:
    assert percentile_interval(np.array([np.nan, np.nan])) == (None, None)
    low, high = percentile_interval(np.array([np.nan, *np.arange(101.0)]))
    assert (low, high) == pytest.approx((2.5, 97.5))


def test_thousand_resamples_of_six_hundred_studies_are_defined() -> None:
    # The evaluation's real size (speed is measured side by side in benchmarks/bootstrap.py).
    rng = np.random.default_rng(0)
    n = 600
    counts = rng.integers(0, 3, size=(n, 3))
    study_of = np.repeat(np.arange(n), 14)
    scores, targets = rng.uniform(size=14 * n).round(3), rng.integers(0, 2, size=14 * n)  # rounded: tie groups
    weights = resample_weights(n, 1000, seed=0)
    for statistic in (micro_f1(counts), auroc(study_of, scores, targets), ratio(targets[:n], np.ones(n))):
        assert np.isfinite(evaluate_resamples(statistic, weights)).all()


def _counts(tp: int = 0, fp: int = 0, fn: int = 0) -> np.ndarray:
    counts = np.zeros((len(OBSERVATIONS), 4), dtype=np.int64)
    counts[OBSERVATIONS.index("Cardiomegaly")] = [tp, fp, fn, 0]
    return counts


# --- radllm evaluate -----------------------------------------------------------------------------------


def _labels(**values: int | None) -> dict:
    named = {name.lower().replace(" ", "_"): name for name in OBSERVATIONS}
    return {name: None for name in OBSERVATIONS} | {named[k]: v for k, v in values.items()}


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def evaluated(tmp_path: Path) -> dict:
    """8 studies, cardiomegaly in the odd ones; the model finds it, the shuffled control says it everywhere."""
    ids = [f"s{i}" for i in range(8)]
    _write(tmp_path / "refs.jsonl", [{"study_id": s, "report": "x", "labels": _labels(cardiomegaly=i % 2)} for i, s in enumerate(ids)])
    says = {1: "The heart is enlarged.", 0: "The heart is normal in size."}
    model = _write(tmp_path / "model.jsonl", [{"task": "report", "study_id": s, "report": says[i % 2]} for i, s in enumerate(ids)])
    vqa = _write(tmp_path / "vqa.jsonl", [{"task": "vqa", "study_id": s, "observation": "Cardiomegaly", "question": "q",
                                           "answer": "yes" if i % 2 else "no", "p_yes": 0.6 if i % 2 else 0.4} for i, s in enumerate(ids)])
    shuffled = _write(tmp_path / "shuffled.jsonl", [{"task": "report", "study_id": s, "report": says[1]} for s in ids])
    shuffled_vqa = _write(tmp_path / "shuffled_vqa.jsonl", [{"task": "vqa", "study_id": s, "observation": "Cardiomegaly", "question": "q",
                                                             "answer": "yes", "p_yes": 0.5} for s in ids])
    out = tmp_path / "eval"
    args = ["evaluate", "--ref", str(tmp_path / "refs.jsonl"), "--out", str(out), "--no-meteor", "--bootstrap", "300", "--ce-labels", "labels",
            "--pred", str(model), "--pred", str(vqa), "--pred", f"shuffled={shuffled}", "--pred", f"shuffled={shuffled_vqa}",
            "--pred", f"same={model}"]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_writes_intervals_and_paired_differences(evaluated: dict) -> None:
    m = evaluated
    assert m["eval/bootstrap"] == 300 and m["eval/bootstrap_seed"] == 0
    assert m["report/ce_f1_micro_present"] == 1.0 and m["report/shuffled/ce_f1_micro_present"] == pytest.approx(2 * 4 / (8 + 4))
    assert m["report/diff/shuffled/ce_f1_micro_present"] == pytest.approx(1 - 2 / 3) and m["report/diff/shuffled/n_studies"] == 8
    assert m["report/ce_f1_micro_present/ci_low"] == m["report/ce_f1_micro_present/ci_high"] == 1.0
    low, high = m["report/diff/shuffled/ce_f1_micro_present/ci_low"], m["report/diff/shuffled/ce_f1_micro_present/ci_high"]
    assert 0 < low <= 1 / 3 <= high <= 1  # the control always has tp 4 of the resampled positives: F1 = 2p / (2p + n) < 1
    assert m["report/shuffled/ce_f1_micro_present/ci_low"] <= m["report/shuffled/ce_f1_micro_present"]
    for key in ("report/diff/same/ce_f1_micro_present", "report/diff/same/ce_f1_micro_present/ci_low",
                "report/diff/same/ce_f1_micro_present/ci_high"):
        assert m[key] == 0.0
    # VQA: the model ranks every study right (AUROC 1, accuracy 1), the control scores 0.5 everywhere (AUROC 0.5).
    assert m["vqa/diff/shuffled/auroc_micro"] == pytest.approx(0.5) and m["vqa/diff/shuffled/accuracy"] == pytest.approx(0.5)
    assert m["vqa/auroc_micro/ci_low"] == 1.0 and "vqa/diff/same/auroc_micro" not in m  # "same" holds no VQA records


def test_bootstrap_off_and_reserved_name(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "refs.jsonl", [{"study_id": "a", "report": "x", "labels": _labels(cardiomegaly=1)}])
    pred = _write(tmp_path / "p.jsonl", [{"task": "report", "study_id": "a", "report": "The heart is enlarged."}])
    base = ["evaluate", "--ref", str(tmp_path / "refs.jsonl"), "--no-meteor", "--pred", str(pred)]
    assert main([*base, "--out", str(tmp_path / "o"), "--bootstrap", "0", "--pred", f"b={pred}"]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert not any("ci_" in key or "/diff/" in key or key == "eval/bootstrap" for key in metrics)
    assert main([*base, "--out", str(tmp_path / "o2"), "--pred", f"diff={pred}"]) == 2
    assert "reserved" in capsys.readouterr().err


def test_macro_auroc_resamples_average_the_observations_defined_on_the_point_sample() -> None:
    from radllm.evaluation.vqa import QuestionOutcome, vqa_metrics
    from radllm.evaluation.intervals import vqa_statistics

    rng = np.random.default_rng(1)
    ids = [f"s{i}" for i in range(40)]
    names = ["Cardiomegaly", "Edema", "No Finding"]
    truth = {sid: _labels(cardiomegaly=int(rng.integers(0, 2)), edema=int(rng.integers(0, 2)), no_finding=1) for sid in ids}
    records = [{"study_id": sid, "observation": name, "question": "q", "answer": "yes", "p_yes": float(rng.uniform())}
               for sid in ids for name in names]
    outcomes = {(r["study_id"], r["observation"], "q"): QuestionOutcome(r["study_id"], r["observation"], True, r["p_yes"],
                                                                       truth[r["study_id"]][r["observation"]]) for r in records}
    statistics = vqa_statistics(outcomes, list(outcomes), ids)
    point = vqa_metrics(records, truth, "positive")
    # No Finding has one class: left out of the macro average, as in the point value
    assert point_value(statistics["auroc_macro"], len(ids)) == pytest.approx(point["vqa/auroc_macro"])
    per_observation = [binary_auroc(np.array([r["p_yes"] for r in records if r["observation"] == n]),
                                    np.array([truth[r["study_id"]][n] for r in records if r["observation"] == n])) for n in names[:2]]
    assert point["vqa/auroc_macro"] == pytest.approx(np.mean(per_observation))
    # a resample that draws one study many times is still defined where both classes remain
    values = evaluate_resamples(statistics["auroc_macro"], resample_weights(len(ids), 200, seed=0))
    assert np.isfinite(values).all() and 0 <= values.min() <= values.max() <= 1


def test_strict_f1_and_contradiction_rate_intervals_in_evaluate(tmp_path: Path) -> None:
    ids = [f"s{i}" for i in range(6)]
    _write(tmp_path / "refs.jsonl", [{"study_id": s, "report": "x", "labels": _labels(cardiomegaly=1)} for s in ids])
    clean, torn = "The heart is enlarged.", "The heart is normal in size. IMPRESSION: Cardiomegaly."
    model = _write(tmp_path / "m.jsonl", [{"task": "report", "study_id": s, "report": torn if i < 2 else clean} for i, s in enumerate(ids)])
    other = _write(tmp_path / "o.jsonl", [{"task": "report", "study_id": s, "report": clean} for s in ids])
    assert main(["evaluate", "--ref", str(tmp_path / "refs.jsonl"), "--out", str(tmp_path / "e"), "--no-meteor", "--ce-labels", "labels",
                 "--bootstrap", "200", "--pred", str(model), "--pred", f"clean={other}"]) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["report/ce_f1_micro_present"] == 1.0 and m["report/ce_f1_micro_present_strict"] == pytest.approx(2 * 4 / (8 + 2))
    assert m["report/contradiction_rate"] == pytest.approx(2 / 6) and m["report/clean/contradiction_rate"] == 0.0
    assert m["report/diff/clean/contradiction_rate"] == pytest.approx(2 / 6)
    assert m["report/diff/clean/ce_f1_micro_present_strict/ci_high"] <= 0  # never better than the clean reports
    assert m["report/contradiction_rate/ci_low"] <= 2 / 6 <= m["report/contradiction_rate/ci_high"]
    assert m["report/reference/contradiction_rate"] == 0.0
