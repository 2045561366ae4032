"""The code probe on synthetic code grids: position-dependent findings are read, label-free codes are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radllm.encoders.metrics import binary_auroc, choose_threshold
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, Labels
from radllm.vq.probe import ProbeConfig, code_probe

K, SIDE = 16, 8
FAST = ProbeConfig(dim=16, epochs=25, lr=1e-2)


def quadrant_grids(n: int, seed: int) -> tuple[torch.Tensor, list[Labels]]:
    """Cardiomegaly = code 5 in the top-left quadrant, Pleural Effusion = code 7 in the bottom-right.

    Both codes also appear elsewhere in half of all grids, whatever the labels, so only a
    probe that knows where a code sits can tell the classes apart (a bag of codes cannot).
    Some positives are uncertain (-1), which the probe and the F1 count as positive.
    """
    rng = np.random.default_rng(seed)
    background = np.array([c for c in range(K) if c not in (5, 7)])
    grids, labels = [], []
    for _ in range(n):
        grid = rng.choice(background, size=(SIDE, SIDE))
        study: Labels = {}
        for name, code, (r0, c0), prevalence in (("Cardiomegaly", 5, (0, 0), 0.3), ("Pleural Effusion", 7, (4, 4), 0.4)):
            if rng.random() < 0.5:  # distractor outside the quadrant
                r, c = rng.integers(0, SIDE, size=2)
                while r0 <= r < r0 + 4 and c0 <= c < c0 + 4:
                    r, c = rng.integers(0, SIDE, size=2)
                grid[r, c] = code
            if rng.random() < prevalence:
                grid[r0 + rng.integers(0, 4), c0 + rng.integers(0, 4)] = code
                study[name] = -1 if rng.random() < 0.2 else 1
            else:
                study[name] = 0 if rng.random() < 0.5 else None
        study["No Finding"] = 1 if not any(study.get(n) for n in ("Cardiomegaly", "Pleural Effusion")) else None
        grids.append(grid)
        labels.append(study)
    return torch.from_numpy(np.stack(grids)).long(), labels


def random_grids(n: int, seed: int) -> tuple[torch.Tensor, list[Labels]]:
    """Uniform random codes; Cardiomegaly (30 %) and Pleural Effusion (50 %) drawn independently of them."""
    rng = np.random.default_rng(seed)
    codes = torch.from_numpy(rng.integers(0, K, size=(n, SIDE, SIDE))).long()
    labels = [{"Cardiomegaly": int(rng.random() < 0.3), "Pleural Effusion": int(rng.random() < 0.5)} for _ in range(n)]
    return codes, labels


def naive_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def is_positive(labels: list[Labels], name: str) -> np.ndarray:
    return np.array([study.get(name) in (1, -1) for study in labels])


def test_position_dependent_findings_are_read() -> None:
    train_codes, train_labels = quadrant_grids(1000, seed=0)
    eval_codes, eval_labels = quadrant_grids(300, seed=1)
    result = code_probe(train_codes, train_labels, eval_codes, eval_labels, K, FAST)
    assert result.observations == ["No Finding", "Cardiomegaly", "Pleural Effusion"]
    assert set(result.excluded) == set(OBSERVATIONS) - set(result.observations)
    assert result.f1_micro_present > 0.97 and result.auroc_macro > 0.99
    assert result.f1["Cardiomegaly"] > 0.95 and result.f1["Pleural Effusion"] > 0.95
    assert result.n_fit == 800 and result.n_holdout == 200 and result.n_eval == 300 and result.n_present == 3

    # The F1 values against a naive count from the returned probabilities and thresholds.
    for j, name in enumerate(result.observations):
        predicted = result.probabilities[:, j] >= result.thresholds[name]
        assert result.f1[name] == pytest.approx(naive_f1(predicted, is_positive(eval_labels, name)))
    assert result.f1["Edema"] == 0.0 and all(p["Edema"] == 0 for p in result.predictions)

    metrics = result.metrics()
    assert metrics["probe/f1_micro_present"] == result.f1_micro_present
    assert metrics["probe/f1/cardiomegaly"] == result.f1["Cardiomegaly"] and "probe/auroc/pleural_effusion" in metrics


def test_label_independent_codes_stay_at_chance() -> None:
    train_codes, train_labels = random_grids(1000, seed=2)
    eval_codes, eval_labels = random_grids(400, seed=3)
    result = code_probe(train_codes, train_labels, eval_codes, eval_labels, K, FAST)
    assert result.observations == ["Cardiomegaly", "Pleural Effusion"]
    pooled_pos = pooled_neg = 0
    for name in result.observations:
        truth = is_positive(eval_labels, name)
        p = truth.mean()
        # 2p / (1 + p) is the expected F1 of the best label-independent predictor (everything positive).
        assert result.f1[name] <= 2 * p / (1 + p) + 0.04
        assert abs(result.auroc[name] - 0.5) < 0.08
        pooled_pos, pooled_neg = pooled_pos + truth.sum(), pooled_neg + (~truth).sum()
    assert result.label_blind_f1_micro_present == pytest.approx(2 * pooled_pos / (2 * pooled_pos + pooled_neg))
    assert result.f1_micro_present <= result.label_blind_f1_micro_present + 0.03


def test_probe_is_deterministic_and_leaves_rng_and_threads_alone() -> None:
    train_codes, train_labels = quadrant_grids(200, seed=4)
    eval_codes, eval_labels = quadrant_grids(50, seed=5)
    config = ProbeConfig(epochs=2)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    first = code_probe(train_codes, train_labels, eval_codes, eval_labels, K, config)
    assert torch.get_num_threads() == threads
    after = torch.rand(3)
    torch.manual_seed(123)
    second = code_probe(train_codes, train_labels, eval_codes, eval_labels, K, config)
    assert torch.equal(after, torch.rand(3))
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    assert first.metrics() | {"probe/seconds": 0} == second.metrics() | {"probe/seconds": 0}
    assert first.steps == 2 * 3  # 160 fitting grids in batches of 64


def test_bad_inputs_are_named() -> None:
    codes, labels = quadrant_grids(20, seed=6)
    with pytest.raises(RadllmError, match="20 train code grids but 19 label dicts"):
        code_probe(codes, labels[:19], codes, labels, K)
    with pytest.raises(RadllmError, match=r"eval codes span \[0, 16\]"):
        code_probe(codes, labels, codes.clamp(max=15) + (codes == 15).long(), labels, K)
    with pytest.raises(RadllmError, match="train grids .8, 8. and eval grids .4, 4. differ"):
        code_probe(codes, labels, codes[:, :4, :4], labels, K)
    with pytest.raises(RadllmError, match="no observation has both positive and negative"):
        code_probe(codes, [{} for _ in labels], codes, labels, K)
    with pytest.raises(RadllmError, match="holdout_fraction"):
        code_probe(codes, labels, codes, labels, K, ProbeConfig(holdout_fraction=1.0))


def test_thresholds_on_given_codes_fit_on_all_train_grids() -> None:
    """With threshold codes the probe fits on every train grid and cuts at the F1 optimum of
    the given grids (checked: eval = the threshold grids, so `probabilities` are theirs)."""
    train_codes, train_labels = quadrant_grids(200, seed=7)
    val_codes, val_labels = quadrant_grids(60, seed=8)
    result = code_probe(train_codes, train_labels, val_codes, val_labels, K, ProbeConfig(epochs=2),
                        threshold_codes=val_codes, threshold_labels=val_labels)
    assert (result.n_fit, result.n_holdout, result.n_threshold, result.thresholds_from) == (200, 0, 60, "threshold codes")
    assert result.metrics()["probe/n_train"] == 200
    for j, name in enumerate(result.observations):
        truth = is_positive(val_labels, name)
        assert result.thresholds[name] == choose_threshold(result.probabilities[:, j], truth, "f1")
        assert result.threshold_auroc[name] == binary_auroc(result.probabilities[:, j], truth)
    default = code_probe(train_codes, train_labels, val_codes, val_labels, K, ProbeConfig(epochs=2))
    assert (default.n_fit, default.n_holdout, default.n_threshold, default.thresholds_from) == (160, 40, 40, "train holdout")
    with pytest.raises(RadllmError, match="both threshold_codes and threshold_labels"):
        code_probe(train_codes, train_labels, val_codes, val_labels, K, threshold_codes=val_codes)
    with pytest.raises(RadllmError, match="threshold grids .4, 4. differ"):
        code_probe(train_codes, train_labels, val_codes, val_labels, K, threshold_codes=val_codes[:, :4, :4], threshold_labels=val_labels)
