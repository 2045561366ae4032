"""Baselines: the normal text, code histograms and retrieval against brute force, and the
`radllm baselines` → `radllm evaluate --pred NAME=FILE` path with hand-computed clinical F1; the
probe baseline against a code-presence rule on a toy set (frontal view, val thresholds), its template
read back by the labeler, the VQA prior against hand-computed rates, the normal image's choice."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

from radllm.cli import main
from radllm.data.sample import TokenizedStudy
from radllm.data.shards import write_split_shards
from radllm.errors import RadllmError
from radllm.evaluation.answer_prior import answer_rates, prior_predictions
from radllm.evaluation.baselines import NORMAL_REPORT, code_histograms, nearest_neighbours, nearest_predictions, write_baselines
from radllm.evaluation.normal_image import normal_source
from radllm.evaluation.probe_baseline import probe_codes, probe_predictions
from radllm.evaluation.template_report import TEMPLATE, TEMPLATE_NORMAL_IMPRESSION, template_report
from radllm.generation.inputs import StudyInput
from radllm.generation.vqa import template_units
from radllm.labeler import default_labeler
from radllm.labels import OBSERVATIONS, empty_labels
from radllm.vocab_spec import VisualVocabSpec
from radllm.vq.probe import ProbeConfig, code_probe

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
    # report/reference/...: the reference reports' own coherence, not a score of either prediction set
    own = [k for k in metrics if k.startswith("report/") and not k.startswith(("report/nearest/", "report/diff/", "report/reference/"))]
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


# --- probe, prior and normal-image baselines ------------------------------------------------------

TOY_CONFIG = ProbeConfig(dim=16, epochs=25, lr=1e-2)
CARDIO_CODE, EFFUSION_CODE = 1, 2  # their presence in the frontal grid is the finding; 10..63 is background


def toy_study(sid: str, split: str, rng: np.random.Generator, cardio: int | None, effusion: int, lateral_first: bool,
              labelled: bool = True) -> tuple[TokenizedStudy, dict]:
    """A two-view study whose frontal grid holds CARDIO_CODE iff Cardiomegaly is 1 and EFFUSION_CODE
    iff Pleural Effusion is 1 or -1. The lateral grid holds both codes whatever the labels, and
    comes first in half of the studies, so only a reader of the frontal view gets them right."""
    frontal, lateral = rng.integers(10, K, (8, 8)), rng.integers(10, K, (8, 8))
    for code, present in ((CARDIO_CODE, cardio == 1), (EFFUSION_CODE, effusion in (1, -1))):
        if present:
            frontal.reshape(-1)[rng.choice(64, 4, replace=False)] = code
        lateral.reshape(-1)[rng.choice(64, 2, replace=False)] = code
    labels = {"Cardiomegaly": cardio, "Pleural Effusion": effusion, "Fracture": 0,
              "No Finding": None if cardio == 1 or effusion in (1, -1) else 1}
    codes, views = ([lateral, frontal], ["LATERAL", "PA"]) if lateral_first else ([frontal, lateral], ["PA", "LATERAL"])
    s = TokenizedStudy(key=sid, study_id=sid, split=split, image_codes=[c.astype(np.int16) for c in codes], views=views,
                       report="unused", report_ids=np.arange(3, dtype=np.int32),
                       labels={**empty_labels(), **(labels if labelled else {})})
    return s, {**empty_labels(), **labels}


def toy_split(rng: np.random.Generator, n: int, split: str, labelled: bool = True) -> tuple[list[TokenizedStudy], list[dict]]:
    pairs = [
        toy_study(f"{split}{i}", split, rng, [1, 0, None][rng.choice(3, p=[0.4, 0.3, 0.3])],
                  [1, -1, 0][rng.choice(3, p=[0.3, 0.1, 0.6])], lateral_first=bool(i % 2), labelled=labelled)
        for i in range(n)
    ]
    return [s for s, _ in pairs], [labels for _, labels in pairs]


def frontal(s: TokenizedStudy) -> np.ndarray:
    return s.image_codes[s.views.index("PA")]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Reference shards (train 480, val 40) and an unseen test-only shard set (40 unlabelled studies,
    their true labels in refs.jsonl), the same visual vocabulary."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(7)
    train, _ = toy_split(rng, 480, "train")
    val, _ = toy_split(rng, 40, "val")
    test, truth = toy_split(rng, 40, "test", labelled=False)
    write_split_shards(root / "ref", {"train": [train[:240], train[240:]], "val": [val]}, SPEC)
    write_split_shards(root / "unseen", {"test": [test]}, SPEC)
    refs = [{"study_id": s.study_id, "report": "unused", "labels": labels} for s, labels in zip(test, truth)]
    (root / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    return root, train, val, test


def naive_template(cardio: bool, effusion: bool) -> str:
    """The four template reports of the toy set, written out by hand."""
    return {
        (False, False): "FINDINGS: No cardiomegaly. No pleural effusion. IMPRESSION: No acute cardiopulmonary abnormality.",
        (True, False): "FINDINGS: Cardiomegaly is present. No pleural effusion. IMPRESSION: Cardiomegaly.",
        (False, True): "FINDINGS: Pleural effusion is present. No cardiomegaly. IMPRESSION: Pleural effusion.",
        (True, True): "FINDINGS: Cardiomegaly is present. Pleural effusion is present. IMPRESSION: Cardiomegaly, pleural effusion.",
    }[cardio, effusion]


def test_template_report_reads_back_as_its_findings() -> None:
    names = list(TEMPLATE)
    assert names == [n for n in OBSERVATIONS if n != "No Finding"]
    labeler = default_labeler()

    def check(stated: dict[str, int]) -> None:
        labels = labeler.label(template_report(stated))
        assert {n: labels[n] for n in names} == {n: stated.get(n) for n in names}, stated
        no_finding = 1 if not any(v for n, v in stated.items() if n != "Support Devices") else None
        assert labels["No Finding"] == no_finding, stated

    for bits in itertools.product((0, 1), repeat=len(names)):  # every observation stated, every combination
        check(dict(zip(names, bits)))
    rng = np.random.default_rng(0)
    for _ in range(500):  # only some observations stated (those a probe was trained on)
        check({n: int(rng.integers(2)) for n in names if rng.random() < 0.5})
    assert template_report({}) == "IMPRESSION: " + TEMPLATE_NORMAL_IMPRESSION
    with pytest.raises(RadllmError, match="unknown observation"):
        template_report({"Cardiomegally": 1})
    with pytest.raises(RadllmError, match="0 or 1"):
        template_report({"Cardiomegaly": -1})


def test_probe_baseline_reads_the_frontal_codes_with_val_thresholds(toy) -> None:
    _, train, val, test = toy
    records, result = probe_predictions(test, train, val, K, TOY_CONFIG)
    assert result.observations == ["No Finding", "Cardiomegaly", "Pleural Effusion"]
    assert "Fracture" in result.excluded  # a single class (0) in train: never stated
    assert result.n_fit == 480 and result.n_holdout == 0 and result.n_threshold == 40  # all of train fits, val chooses
    # Naive re-implementation: a finding is present iff its code is in the frontal grid.
    labeler = default_labeler()
    for s, r in zip(test, records):
        cardio, effusion = bool((frontal(s) == CARDIO_CODE).any()), bool((frontal(s) == EFFUSION_CODE).any())
        assert r["findings"] == {"Cardiomegaly": int(cardio), "Pleural Effusion": int(effusion)}
        assert r["report"] == naive_template(cardio, effusion)
        labels = labeler.label(r["report"])
        assert {n: v for n, v in labels.items() if v is not None and n != "No Finding"} == r["findings"]
        assert r["task"] == "report" and r["baseline"] == "baseline_probe" and r["study_id"] == s.study_id
    # Thresholds sit in the gap val leaves between its negatives and positives.
    val_probs = code_probe(probe_codes(train, "t"), [s.labels for s in train], probe_codes(val, "v"), [s.labels for s in val], K,
                           TOY_CONFIG, threshold_codes=probe_codes(val, "v"), threshold_labels=[s.labels for s in val]).probabilities
    for j, name in enumerate(result.observations):
        positive = np.array([s.labels[name] in (1, -1) for s in val])
        assert val_probs[~positive, j].max() < result.thresholds[name] <= val_probs[positive, j].min()
        assert result.threshold_auroc[name] == 1.0


def test_probe_thresholds_come_from_the_threshold_split(toy) -> None:
    """Val copies of the test grids all labelled Cardiomegaly: the F1 cut falls below every test
    probability, so every study is called cardiomegaly; the fit (train) is unchanged."""
    _, train, val, test = toy
    shifted = [TokenizedStudy(key=f"v{s.key}", study_id=f"v{s.study_id}", split="val", image_codes=s.image_codes, views=s.views,
                              report="", report_ids=s.report_ids, labels={**empty_labels(), "Cardiomegaly": 1, "Pleural Effusion": 0})
               for s in test]
    records, result = probe_predictions(test, train, shifted, K, TOY_CONFIG)
    assert all(r["findings"]["Cardiomegaly"] == 1 for r in records)
    assert result.thresholds["Cardiomegaly"] < result.probabilities[:, result.observations.index("Cardiomegaly")].min()
    assert result.threshold_auroc["Cardiomegaly"] is None  # one class on the threshold split
    plain, _ = probe_predictions(test, train, val, K, TOY_CONFIG)
    assert [r["probabilities"] for r in plain] == [r["probabilities"] for r in records]  # same seeded fit
    assert any(r["findings"]["Cardiomegaly"] == 0 for r in plain)


def test_answer_prior_against_hand_computed_rates() -> None:
    labels = [{"Cardiomegaly": 1, "Support Devices": 1}, {"Cardiomegaly": 0}, {"Cardiomegaly": -1}, {"Cardiomegaly": 1}, {}]
    rates = answer_rates(labels)
    assert rates["Cardiomegaly"] == {"yes": 0.5, "no": 0.25, "uncertain": 0.25}  # 2, 1, 1 of 4 labelled; the blank not counted
    assert rates["Support Devices"] == {"yes": 1.0, "no": 0.0, "uncertain": 0.0}
    assert rates["Edema"] == {"yes": 0.0, "no": 1.0, "uncertain": 0.0}  # never labelled
    records = prior_predictions(["s1", "s2"], rates)
    units = template_units([StudyInput("s1"), StudyInput("s2")], OBSERVATIONS, 0)  # what `radllm generate vqa` asks
    asked = [(u.study.study_id, u.observation, u.question) for u in units]
    assert [(r["study_id"], r["observation"], r["question"]) for r in records] == asked
    by_key = {(r["study_id"], r["observation"]): r for r in records}
    assert by_key["s2", "Cardiomegaly"]["p_yes"] == 0.5 and by_key["s2", "Cardiomegaly"]["answer"] == "yes"
    assert by_key["s1", "Edema"]["p_yes"] == 0.0 and by_key["s1", "Edema"]["answer"] == "no"
    assert by_key["s1", "Cardiomegaly"]["p_answers"] == rates["Cardiomegaly"]
    assert all(r["task"] == "vqa" and r["baseline"] == "baseline_prior" for r in records)


def write_png(path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, dtype=np.uint8)).save(path)


def normal_manifest(root, with_normal: bool = True):
    """Train studies in manifest order: abnormal; normal with a device; normal without a frontal
    image; the one to pick (lateral listed before its PA); another normal. A val normal comes first."""
    def entry(sid, split, labels, images):
        return {"study_id": sid, "split": split, "labels": labels, "report": {"text": "x"},
                "images": [{"path": p, "view": v} for p, v in images]}

    rows = [
        entry("v0", "val", {"No Finding": 1}, [("img/v0.png", "PA")]),
        entry("t0", "train", {"Cardiomegaly": 1}, [("img/t0.png", "PA")]),
        entry("t1", "train", {"No Finding": 1, "Support Devices": 1}, [("img/t1.png", "PA")]),
        entry("t2", "train", {"No Finding": 1}, [("img/t2.png", "LATERAL")]),
    ]
    if with_normal:
        rows += [entry("t3", "train", {"No Finding": 1, "Support Devices": 0}, [("img/t3_lat.png", "LATERAL"), ("img/t3.png", "PA")]),
                 entry("t4", "train", {"No Finding": 1}, [("img/t4.png", "PA")])]
    for i, row in enumerate(rows):
        for image in row["images"]:
            write_png(root / image["path"], 10 * i + len(image["path"]))
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_normal_image_is_the_first_unremarkable_frontal_image(tmp_path) -> None:
    manifest = normal_manifest(tmp_path / "m")
    study, image = normal_source(manifest, "train")
    assert study.study_id == "t3" and image == tmp_path / "m" / "img" / "t3.png"
    with pytest.raises(RadllmError, match="no 'train' study with No Finding = 1"):
        normal_source(normal_manifest(tmp_path / "none", with_normal=False), "train")


def test_reference_shards_of_another_vocabulary_is_an_error_and_val_may_score_itself(toy, tmp_path) -> None:
    root, _, _, test = toy
    other = dataclasses.replace(SPEC, token_offset=101, vocab_size=193)
    write_split_shards(tmp_path / "other", {"test": [test]}, other)
    with pytest.raises(RadllmError, match="do not share one visual vocabulary"):
        write_baselines(tmp_path / "other", tmp_path / "out", reference_shards=root / "ref")
    # Scoring the threshold split itself (the val evaluation set) is allowed and recorded as in-sample.
    write_baselines(root / "ref", tmp_path / "val", split="val", probe_config=TOY_CONFIG)
    assert json.loads((tmp_path / "val" / "baselines.json").read_text())["baseline_probe"]["thresholds_on_scored_studies"] is True


def test_unlabelled_reference_split_skips_the_probe_and_prior(shards) -> None:
    root, *_ = shards  # the report fixture's studies carry no labels
    paths = write_baselines(root / "shards", root / "unlabelled")
    assert set(paths) == {"baseline_normal", "baseline_nearest"}
    summary = json.loads((root / "unlabelled" / "baselines.json").read_text())
    assert set(summary["skipped"]) == {"baseline_probe", "baseline_prior"}


def test_cli_baselines_for_an_unseen_test_set_then_evaluate(toy, tmp_path, capsys) -> None:
    root, train, val, test = toy
    manifest = normal_manifest(tmp_path / "m")
    with pytest.raises(SystemExit):
        main(["baselines", "--help"])
    helped = capsys.readouterr().out
    for name in ("baseline_normal.jsonl", "baseline_nearest.jsonl", "baseline_probe.jsonl", "baseline_prior.jsonl",
                 "baseline_normal_images.jsonl", "baselines.json", "--reference-shards", "--threshold-split", "--manifest"):
        assert name in helped

    out = tmp_path / "out"
    args = ["baselines", "--shards", str(root / "unseen"), "--reference-shards", str(root / "ref"), "--out", str(out),
            "--manifest", str(manifest)]
    assert main(args) == 0
    summary = json.loads((out / "baselines.json").read_text())
    assert summary["n_studies"] == 40 and summary["n_reference_studies"] == 480 and summary["n_threshold_studies"] == 40
    probe = summary["baseline_probe"]
    assert probe["threshold_split"] == "val" and probe["thresholds_on_scored_studies"] is False
    assert set(probe["thresholds"]) == set(probe["threshold_split_auroc"]) == {"No Finding", "Cardiomegaly", "Pleural Effusion"}
    assert probe["config"] == dataclasses.asdict(ProbeConfig())
    # The prior's yes-rates against a plain count over the train labels.
    for name in OBSERVATIONS:
        labelled = [s.labels[name] for s in train if s.labels[name] is not None]
        assert summary["baseline_prior"]["train_yes_rate"][name] == (labelled.count(1) / len(labelled) if labelled else 0.0)
    assert summary["baseline_normal_images"]["source_study_id"] == "t3"
    assert (out / "baseline_normal_image.png").read_bytes() == (tmp_path / "m" / "img" / "t3.png").read_bytes()
    images = [json.loads(line) for line in (out / "baseline_normal_images.jsonl").read_text().splitlines()]
    assert images == [{"task": "image", "study_id": s.study_id, "image": "baseline_normal_image.png", "baseline": "baseline_normal"}
                      for s in test]
    prior = [json.loads(line) for line in (out / "baseline_prior.jsonl").read_text().splitlines()]
    assert len(prior) == 40 * len(OBSERVATIONS)

    ev = tmp_path / "eval"
    code = main([
        "evaluate", "--ref", str(root / "refs.jsonl"), "--out", str(ev), "--no-meteor", "--ce-labels", "labels",
        "--pred", f"baseline_normal={out / 'baseline_normal.jsonl'}", "--pred", f"baseline_normal={out / 'baseline_normal_images.jsonl'}",
        "--pred", f"baseline_probe={out / 'baseline_probe.jsonl'}", "--pred", f"baseline_prior={out / 'baseline_prior.jsonl'}",
    ])
    assert code == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["image/baseline_normal/gen_n"] == 40 and "report/baseline_normal/ce_f1_micro_14" in metrics
    assert metrics["report/baseline_probe/ce_f1_micro_present"] == pytest.approx(1.0)  # the toy findings are in the codes
    assert any(k.startswith("vqa/baseline_prior/") for k in metrics)
