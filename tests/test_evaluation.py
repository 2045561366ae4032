"""Evaluation metrics against hand-computed values: NLG, clinical efficacy, FID, VQA, image metrics."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from radllm.clinical_efficacy import clinical_efficacy
from radllm.encoders import CXREncoder, EncoderSpec
from radllm.evaluation.clinical import Confusion, averaged_scores, binarize, confusion_tables
from radllm.evaluation.images import (
    absent_image_scores, frechet_distance, gaussian_statistics, score_generated_images,
)
from radllm.evaluation.inputs import Reference
from radllm.evaluation.nlg import metric_tokens, nlg_metrics
from radllm.labeler import default_labeler
from radllm.evaluation.reports import score_reports
from radllm.evaluation.vqa import vqa_metrics
from radllm.imaging import save_png
from radllm.labels import COMMON_FIVE, OBSERVATIONS, empty_labels

# --- NLG --------------------------------------------------------------------------------------

PREDICTIONS = {"a": "Heart is enlarged.", "b": "No effusion."}
REFERENCES = {"a": "The heart is normal in size.", "b": "No pleural effusion."}


def _rouge_l(p: float, r: float, beta: float = 1.2) -> float:
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def test_bleu_1_and_rouge_l_equal_hand_computed_values() -> None:
    scores = nlg_metrics(PREDICTIONS, REFERENCES, meteor=False).scores
    # BLEU-1 (corpus): clipped unigram matches a: heart, is (2 of 3); b: no, effusion (2 of 2)
    # -> precision 4/5; candidate length 5, reference length 6 + 3 = 9 -> brevity penalty e^(1 - 9/5).
    assert scores["bleu_1"] == pytest.approx(0.8 * math.exp(1 - 9 / 5), rel=1e-6)
    # ROUGE-L per study, averaged: a: LCS "heart is" = 2, P 2/3, R 2/6; b: LCS 2, P 1, R 2/3.
    assert scores["rouge_l"] == pytest.approx((_rouge_l(2 / 3, 2 / 6) + _rouge_l(1.0, 2 / 3)) / 2, rel=1e-6)
    assert set(scores) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"}


def test_identical_reports_score_perfectly_and_cleaning_is_shared() -> None:
    perfect = nlg_metrics(REFERENCES, REFERENCES, meteor=False).scores
    assert perfect["bleu_1"] == pytest.approx(1.0) and perfect["rouge_l"] == pytest.approx(1.0)
    # Case, punctuation, list numbering and de-identification placeholders do not count.
    noisy = {"a": "1. XXXX The HEART is normal in size", "b": "No pleural effusion!!"}
    assert nlg_metrics(noisy, REFERENCES, meteor=False).scores == pytest.approx(perfect)
    assert metric_tokens("1. XXXX Heart size: 1.5 cm, x-ray.") == ["heart", "size", "1.5", "cm", "x-ray"]


def test_meteor_is_skipped_with_a_reason_without_java(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = nlg_metrics(PREDICTIONS, REFERENCES)
    assert "meteor" not in result.scores and "java" in result.skipped["meteor"]
    assert result.scores["bleu_1"] == pytest.approx(0.8 * math.exp(1 - 9 / 5), rel=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not any(os.access(os.path.join(p, "java"), os.X_OK) for p in os.environ.get("PATH", "").split(os.pathsep)), reason="needs java")
def test_meteor_runs_with_java() -> None:
    """One Java start (slow): identical reports score near 1 (only METEOR's fragmentation penalty)."""
    result = nlg_metrics(REFERENCES, REFERENCES)
    assert not result.skipped and 0.9 < result.scores["meteor"] <= 1.0


# --- clinical efficacy --------------------------------------------------------------------------


def _labels(**values: int | None) -> dict:
    labels = empty_labels()
    labels.update({name.replace("_", " "): v for name, v in values.items()})
    return labels


# Four studies, two observations. Pred/ref per study (Edema, Cardiomegaly):
#   s1: (1, 1) vs (1, 0)      s2: (0, -1) vs (1, -1)
#   s3: (-1, None) vs (0, 1)  s4: (None, 1) vs (None, 1)
PRED = [_labels(Edema=1, Cardiomegaly=1), _labels(Edema=0, Cardiomegaly=-1), _labels(Edema=-1), _labels(Cardiomegaly=1)]
REF = [_labels(Edema=1, Cardiomegaly=0), _labels(Edema=1, Cardiomegaly=-1), _labels(Edema=0, Cardiomegaly=1), _labels(Cardiomegaly=1)]


@pytest.mark.parametrize(
    ("policy", "edema", "cardiomegaly"),
    [
        # uncertain -> positive: Edema pairs (1,1) (0,1) (1,0) (0,0); Cardiomegaly (1,0) (1,1) (0,1) (1,1)
        ("positive", Confusion(tp=1, fp=1, fn=1, tn=1), Confusion(tp=2, fp=1, fn=1, tn=0)),
        # uncertain -> negative: Edema (1,1) (0,1) (0,0) (0,0); Cardiomegaly (1,0) (0,0) (0,1) (1,1)
        ("negative", Confusion(tp=1, fp=0, fn=1, tn=2), Confusion(tp=1, fp=1, fn=1, tn=1)),
        # ignore: drop s3 for Edema, s2 for Cardiomegaly
        ("ignore", Confusion(tp=1, fp=0, fn=1, tn=1), Confusion(tp=1, fp=1, fn=1, tn=0)),
    ],
)
def test_confusion_tables_hand_computed(policy: str, edema: Confusion, cardiomegaly: Confusion) -> None:
    tables = confusion_tables(PRED, REF, ["Edema", "Cardiomegaly"], policy)
    assert tables == {"Edema": edema, "Cardiomegaly": cardiomegaly}


def test_micro_and_macro_averages_hand_computed() -> None:
    tables = confusion_tables(PRED, REF, ["Edema", "Cardiomegaly"], "positive")
    scores = averaged_scores(tables)
    # pooled tp 3, fp 2, fn 2
    assert scores["precision_micro"] == pytest.approx(3 / 5)
    assert scores["recall_micro"] == pytest.approx(3 / 5)
    assert scores["f1_micro"] == pytest.approx(6 / 10)
    # Edema P 1/2 R 1/2 F 1/2; Cardiomegaly P 2/3 R 2/3 F 2/3
    assert scores["precision_macro"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores["f1_macro"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert Confusion().precision == 0.0 and Confusion(tn=3).f1 == 0.0  # undefined -> 0


def test_clinical_efficacy_keys_over_14_and_5() -> None:
    ce = clinical_efficacy(PRED, REF, "positive")
    # Over all 14 only Edema and Cardiomegaly have positives; No Finding: all blank on both sides.
    assert ce["ce_f1_micro_14"] == pytest.approx(6 / 10)
    assert ce["ce_f1_macro_14"] == pytest.approx((1 / 2 + 2 / 3) / 14)
    assert ce["ce_f1_macro_5"] == pytest.approx((1 / 2 + 2 / 3) / 5)
    assert ce["ce_f1/edema"] == pytest.approx(1 / 2)
    assert {k for k in ce if k.startswith("ce_f1/")} == {f"ce_f1/{o.lower().replace(' ', '_')}" for o in OBSERVATIONS}
    assert set(COMMON_FIVE) <= set(OBSERVATIONS)
    with pytest.raises(ValueError, match="uncertain policy"):
        binarize(-1, "maybe")


def test_report_metrics_use_the_labeler_on_predictions() -> None:
    refs = {
        "a": Reference("a", "Small left pleural effusion.", _labels(Pleural_Effusion=1)),
        "b": Reference("b", "No pleural effusion.", _labels(Pleural_Effusion=0)),
    }
    records = [{"study_id": "a", "report": "Small right pleural effusion."}, {"study_id": "b", "report": "Moderate effusion."}]
    metrics = score_reports(records, refs, "positive", "labels", default_labeler(), meteor=False).metrics
    # pred effusion 1, 1 vs ref 1, 0: tp 1, fp 1 -> P 1/2, R 1, F1 2/3; No Finding: ref b says 1, pred says blank -> fn.
    assert metrics["report/ce_f1/pleural_effusion"] == pytest.approx(2 / 3)
    assert metrics["report/ce_recall/no_finding"] == 0.0
    assert metrics["report/n_studies"] == 2 and "report/bleu_4" in metrics


# --- FID ------------------------------------------------------------------------------------------


def test_frechet_distance_hand_computed_gaussians() -> None:
    # 1-D: (0 - 2)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 5
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([2.0]), np.array([[4.0]])) == pytest.approx(5.0)
    # Diagonal: |(1, 1)|^2 + (1 + 4 - 2*2) + (4 + 9 - 2*6) = 4
    assert frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.ones(2), np.diag([4.0, 9.0])) == pytest.approx(4.0)
    # Same eigenvectors, rotated: sqrt(S1 S2) has eigenvalues 3, 8 -> 1 + 4 + 9 + 16 - 22 = 8
    angle = 0.3
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    s1, s2 = rot @ np.diag([1.0, 4.0]) @ rot.T, rot @ np.diag([9.0, 16.0]) @ rot.T
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(8.0)
    assert frechet_distance(np.zeros(2), s1, np.zeros(2), s1) == pytest.approx(0.0, abs=1e-9)


def test_fid_from_samples_approaches_the_gaussian_value() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 2))
    b = rng.normal(1.0, 2.0, size=(20000, 2))
    # per dim: 1 + 1 + 4 - 2*2 = 2 -> 4 in total
    assert frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b)) == pytest.approx(4.0, abs=0.15)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_statistics(a[:1])


# --- VQA --------------------------------------------------------------------------------------------


def test_vqa_accuracy_and_auroc_hand_computed() -> None:
    truth = {
        "s1": _labels(Edema=1, Cardiomegaly=0),
        "s2": _labels(Edema=0, Cardiomegaly=-1),
        "s3": _labels(Edema=-1, Cardiomegaly=1),
        "s4": _labels(Edema=0),
    }

    def rec(sid, obs, answer, p):
        return {"study_id": sid, "observation": obs, "answer": answer, "p_yes": p}

    records = [
        rec("s1", "Edema", "yes", 0.9), rec("s2", "Edema", "yes", 0.6), rec("s3", "Edema", "uncertain", 0.7),
        rec("s4", "Edema", "no", 0.1), rec("s1", "Cardiomegaly", "no", 0.2), rec("s2", "Cardiomegaly", "no", 0.3),
        rec("s3", "Cardiomegaly", "yes", 0.8), rec("s4", "Cardiomegaly", "no", 0.5),  # blank truth: unscored
    ]
    m = vqa_metrics(records, truth, "positive")
    assert m["vqa/n"] == 8 and m["vqa/n_unscored"] == 1
    # correct: s1E, s3E, s4E, s1C, s3C (s2E wrong, s2C says no for uncertain) -> 5 / 7
    assert m["vqa/accuracy"] == pytest.approx(5 / 7)
    assert m["vqa/accuracy/edema"] == pytest.approx(3 / 4)
    # Edema, uncertain -> positive: pos {0.9, 0.7}, neg {0.6, 0.1} -> all 4 pairs ordered -> 1.0
    assert m["vqa/auroc/edema"] == pytest.approx(1.0)
    # Cardiomegaly: pos {0.3 (s2 uncertain), 0.8}, neg {0.2} -> 2/2 -> 1.0
    assert m["vqa/auroc/cardiomegaly"] == pytest.approx(1.0)
    # pooled: pos {0.9, 0.7, 0.3, 0.8}, neg {0.6, 0.1, 0.2}: pairs won = 3+3+3+2 ... 0.3 beats 0.1, 0.2 only -> 11/12
    assert m["vqa/auroc_micro"] == pytest.approx(11 / 12)
    ignore = vqa_metrics(records, truth, "ignore")
    # Edema without s3: pos {0.9}, neg {0.6, 0.1} -> 1.0; Cardiomegaly without s2: pos {0.8}, neg {0.2} -> 1.0
    assert ignore["vqa/auroc_macro"] == pytest.approx(1.0) and ignore["vqa/auroc_micro"] == pytest.approx(1.0)


# --- generated images: clinical agreement with the requested findings ---------------------------------


class HalfMeans(torch.nn.Module):
    """Finding 0 = mean of the top half >= 0.5, finding 1 = mean of the bottom half >= 0.5."""

    def feature_maps(self, x):
        return [x]

    def classify(self, last):
        h = last.shape[-2] // 2
        return torch.stack([last[..., :h, :].mean(dim=(1, 2, 3)), last[..., h:, :].mean(dim=(1, 2, 3))], dim=1)


def test_generated_image_agreement_hand_computed(tmp_path) -> None:
    spec = EncoderSpec(
        arch="half-means", label_names=["Cardiomegaly", "Pleural Effusion"], output_names=["top", "bottom"],
        output_indices=[0, 1], thresholds=[0.5, 0.5], input_size=16, input_scale=1.0, input_shift=-0.5,
    )
    encoder = CXREncoder(HalfMeans(), spec).freeze()
    top = np.zeros((16, 16), np.float32)
    top[:8] = 1.0
    save_png(top, tmp_path / "top.png")  # findings: Cardiomegaly 1, Pleural Effusion 0
    save_png(np.ones((16, 16), np.float32), tmp_path / "bright.png")  # 1, 1
    records = [{"study_id": "a", "image": str(tmp_path / "top.png")}, {"study_id": "b", "image": str(tmp_path / "bright.png")}]
    refs = {sid: Reference(sid, "", None, [tmp_path / "top.png"]) for sid in ("a", "b")}
    requested = [_labels(Cardiomegaly=1, Pleural_Effusion=1), _labels(Cardiomegaly=-1)]
    m = score_generated_images(records, refs, requested, "positive", encoder, encoder).metrics
    # a: (1,0) vs (1,1) -> 1 of 2 agree; b: (1,1) vs (1,0 blank) -> 1 of 2 -> 2/4
    assert m["image/gen_clinical_agreement"] == pytest.approx(0.5)
    # tp 2, fp 1 (b effusion), fn 1 (a effusion) -> F1 4/6
    assert m["image/gen_clinical_f1_micro"] == pytest.approx(4 / 6)
    assert "image/fid" in m and m["image/gen_n"] == 2
    m = score_generated_images(records, refs, requested, "negative", None, None).metrics
    assert "image/fid" not in m and "image/gen_clinical_agreement" not in m and "no --classifier" in m["image/gen_clinical_agreement_skipped"]
    # the per-study counts the bootstrap resamples: a (tp cardio, fn effusion), b (tp cardio, fp effusion)
    scores = score_generated_images(records, refs, requested, "positive", None, encoder)
    assert scores.counts["a"].tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]] and scores.counts["b"].tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]


def test_an_image_showing_nothing_scores_the_share_of_absent_findings() -> None:
    requested = [_labels(Cardiomegaly=1, Pleural_Effusion=0), _labels(Cardiomegaly=0), _labels(Pleural_Effusion=1)]
    absent = absent_image_scores(["a", "b", "c"], requested, ["Cardiomegaly", "Pleural Effusion"], "positive")
    # 6 pairs, of which 2 requested (a cardio, c effusion): agreement 4/6, no true positive -> F1 0
    assert absent.metrics == {"image/gen_clinical_agreement": pytest.approx(4 / 6), "image/gen_clinical_f1_micro": 0.0}
    assert absent.counts["c"].tolist() == [[0, 0, 0, 1], [0, 0, 1, 0]]
