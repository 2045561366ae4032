"""Report baselines: the normal text, code histograms and retrieval against brute force, and the
`radllm baselines` → `radllm evaluate --pred NAME=FILE` path with hand-computed clinical F1."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from radllm.cli import main
from radllm.data.sample import TokenizedStudy
from radllm.data.shards import write_split_shards
from radllm.errors import RadllmError
from radllm.evaluation.baselines import NORMAL_REPORT, code_histograms, nearest_neighbours, nearest_predictions
from radllm.labeler import default_labeler
from radllm.labels import OBSERVATIONS
from radllm.vocab_spec import VisualVocabSpec

K = 64
SPEC = VisualVocabSpec(
    codebook_size=K, grid_height=8, grid_width=8, image_size=64, token_offset=100,
    boi_id=98, eoi_id=99, text_vocab_size=98, vocab_size=192,
)
CARDIOMEGALY = "FINDINGS: Moderate cardiomegaly. No pleural effusion. IMPRESSION: Cardiomegaly."


def study(sid: str, split: str, codes: list[np.ndarray], report: str = "") -> TokenizedStudy:
    return TokenizedStudy(
        key=sid, study_id=sid, split=split, image_codes=[c.astype(np.int16) for c in codes],
        views=["PA", "LATERAL"][: len(codes)], report=report, report_ids=np.arange(3, dtype=np.int32),
    )


def random_studies(rng: np.random.Generator, n: int, split: str) -> list[TokenizedStudy]:
    # skewed code frequencies, 1 or 2 views, so histograms overlap and similarities are spread out
    return [
        study(f"{split}{i}", split, [rng.choice(K, (8, 8), p=rng.dirichlet(np.full(K, 0.3))) for _ in range(1 + i % 2)])
        for i in range(n)
    ]


def brute_force_nearest(queries: list[TokenizedStudy], references: list[TokenizedStudy]) -> list[tuple[int, float]]:
    """Cosine of Counter histograms in plain Python; first maximum wins."""

    def histogram(s: TokenizedStudy) -> Counter:
        return Counter(int(c) for codes in s.image_codes for c in codes.reshape(-1))

    def cosine(a: Counter, b: Counter) -> float:
        dot = sum(a[k] * b[k] for k in a)
        return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))

    out = []
    for q in queries:
        hq = histogram(q)
        sims = [cosine(hq, histogram(r)) for r in references]
        best = max(range(len(sims)), key=lambda j: (sims[j], -j))
        out.append((best, sims[best]))
    return out


def test_normal_report_is_labelled_normal() -> None:
    labels = default_labeler().label(NORMAL_REPORT)
    assert labels["No Finding"] == 1
    assert all(labels[name] in (0, None) for name in OBSERVATIONS if name != "No Finding")
    assert sum(labels[name] == 0 for name in OBSERVATIONS) >= 8  # explicit negatives, as phantom reports have


def test_code_histograms_count_codes_over_all_views() -> None:
    studies = random_studies(np.random.default_rng(0), 5, "train")
    dense = code_histograms(studies, K).toarray()
    for row, s in zip(dense, studies):
        expected = np.bincount(np.concatenate([c.reshape(-1) for c in s.image_codes]), minlength=K)
        np.testing.assert_array_equal(row, expected)


def test_nearest_neighbours_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    references = random_studies(rng, 40, "train")
    queries = random_studies(rng, 13, "test")
    indices, sims = nearest_neighbours(code_histograms(queries, K), code_histograms(references, K), chunk=4)
    for (j, s), got_j, got_s in zip(brute_force_nearest(queries, references), indices, sims):
        assert got_s == pytest.approx(s, abs=1e-12)
        assert got_j == j


def test_ties_go_to_the_first_reference_and_bad_codes_are_errors() -> None:
    rng = np.random.default_rng(2)
    base = random_studies(rng, 3, "train")
    references = [base[0], base[1], study("copy", "train", base[1].image_codes)]  # 1 and 2 identical
    indices, sims = nearest_neighbours(code_histograms([base[1]], K), code_histograms(references, K))
    assert indices.tolist() == [1] and sims[0] == pytest.approx(1.0)
    with pytest.raises(RadllmError, match="outside the codebook"):
        code_histograms([study("bad", "test", [np.full((8, 8), K)])], K)
    with pytest.raises(RadllmError, match="no image codes"):
        code_histograms([study("none", "test", [])], K)


def perturbed(codes: list[np.ndarray], rng: np.random.Generator, cells: int = 6) -> list[np.ndarray]:
    out = []
    for c in codes:
        c = c.copy().reshape(-1)
        c[rng.choice(c.size, cells, replace=False)] = rng.integers(0, K, cells)
        out.append(c.reshape(8, 8))
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """6 training studies (normal / cardiomegaly reports alternating) and 4 test studies that are
    perturbed copies of training studies 1..4, with reference labels of the copied report."""
    root = tmp_path_factory.mktemp("baselines")
    rng = np.random.default_rng(3)
    train = [
        study(s.study_id, "train", s.image_codes, CARDIOMEGALY if i % 2 else NORMAL_REPORT)
        for i, s in enumerate(random_studies(rng, 6, "train"))
    ]
    test = [study(f"test{i}", "test", perturbed(train[i].image_codes, rng), "unused") for i in range(1, 5)]
    write_split_shards(root / "shards", {"train": [train[:4], train[4:]], "test": [test]}, SPEC)
    labeler = default_labeler()
    refs = [{"study_id": t.study_id, "report": train[i].report, "labels": labeler.label(train[i].report)} for i, t in zip(range(1, 5), test)]
    (root / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    return root, train, test


def test_nearest_predictions_retrieve_the_copied_study(shards) -> None:
    _, train, test = shards
    records = nearest_predictions(test, train, K)
    assert [r["neighbour_study_id"] for r in records] == ["train1", "train2", "train3", "train4"]
    assert [r["report"] for r in records] == [train[i].report for i in range(1, 5)]
    assert all(r["task"] == "report" and 0.5 < r["similarity"] < 1.0 for r in records)


def test_cli_baselines_then_named_evaluation(shards, capsys) -> None:
    root, train, test = shards
    out = root / "out"
    assert main(["baselines", "--shards", str(root / "shards"), "--out", str(out)]) == 0
    normal = [json.loads(line) for line in (out / "baseline_normal.jsonl").read_text().splitlines()]
    assert [r["study_id"] for r in normal] == [t.study_id for t in test]
    assert {r["report"] for r in normal} == {NORMAL_REPORT}
    summary = json.loads((out / "baselines.json").read_text())
    assert summary["baseline_normal"]["report"] == NORMAL_REPORT and summary["n_reference_studies"] == 6

    ev = root / "eval"
    code = main([
        "evaluate", "--pred", f"baseline_normal={out / 'baseline_normal.jsonl'}",
        "--pred", f"baseline_nearest={out / 'baseline_nearest.jsonl'}",
        "--ref", str(root / "refs.jsonl"), "--out", str(ev), "--no-meteor",
    ])
    assert code == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    # references: test1, test3 cardiomegaly (No Finding blank); test2, test4 normal (No Finding 1).
    # Always normal: positives predicted = No Finding x4 -> TP 2, FP 2; missed: 2 cardiomegaly -> FN 2.
    assert metrics["report/baseline_normal/ce_precision_micro_14"] == pytest.approx(0.5)
    assert metrics["report/baseline_normal/ce_recall_micro_14"] == pytest.approx(0.5)
    assert metrics["report/baseline_normal/ce_f1_micro_14"] == pytest.approx(0.5)
    assert metrics["report/baseline_nearest/ce_f1_micro_14"] == pytest.approx(1.0)  # retrieved the right reports
    assert metrics["report/baseline_nearest/bleu_4"] == pytest.approx(1.0)
    assert metrics["eval/baseline_normal/predictions"].endswith("baseline_normal.jsonl")
    assert not any(key.startswith("report/ce_") for key in metrics)  # nothing unnamed was scored
    printed = capsys.readouterr().out
    assert "report/baseline_nearest/ce_f1_micro_14" in printed and "ce_f1/cardiomegaly" not in printed


def test_unnamed_and_named_predictions_score_identically(shards) -> None:
    root, *_ = shards
    pred = root / "out" / "baseline_nearest.jsonl"
    if not pred.exists():
        assert main(["baselines", "--shards", str(root / "shards"), "--out", str(root / "out")]) == 0
    args = ["--ref", str(root / "refs.jsonl"), "--no-meteor"]
    assert main(["evaluate", "--pred", str(pred), "--pred", f"nearest={pred}", "--out", str(root / "both"), *args]) == 0
    metrics = json.loads((root / "both" / "metrics.json").read_text())
    own = [k for k in metrics if k.startswith("report/") and not k.startswith(("report/nearest/", "report/diff/"))]
    assert own and all(metrics[k.replace("report/", "report/nearest/", 1)] == metrics[k] for k in own)
    # The same records on both sides: the paired difference and its interval are exactly 0.
    diff = "report/diff/nearest/ce_f1_micro_present"
    assert [metrics[diff], metrics[f"{diff}/ci_low"], metrics[f"{diff}/ci_high"]] == [0.0, 0.0, 0.0]


def test_bad_prediction_names_are_errors(shards, capsys) -> None:
    root, *_ = shards
    pred = str(root / "refs.jsonl")
    base = ["evaluate", "--ref", pred, "--out", str(root / "bad"), "--no-meteor"]
    assert main([*base, "--pred", f"a b={pred}"]) == 2
    assert "prediction name 'a b'" in capsys.readouterr().err
    assert main(["baselines", "--shards", str(root / "shards"), "--out", str(root / "x"), "--split", "val"]) == 2
