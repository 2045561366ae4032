"""Paired bootstrap of `radllm evaluate`: vectorised resamples vs a per-resample Python loop, side by side.

    .venv/bin/python benchmarks/bootstrap.py                  # 600 studies, 14 questions each, 1000 resamples
    .venv/bin/python benchmarks/bootstrap.py --studies 3000 --resamples 2000

Synthetic per-study confusion counts and VQA scores; both paths compute the same micro F1 and
AUROC values (checked), so the printed ratio is the cost of the loop, measured in one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from radllm.encoders.metrics import binary_auroc
from radllm.evaluation.bootstrap import auroc, evaluate_resamples, micro_f1, resample_weights


def naive(counts: np.ndarray, study_of: np.ndarray, scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Micro F1 and AUROC per resample, one resample at a time, from expanded samples."""
    f1, roc = [], []
    for row in weights:
        tp, fp, fn = (counts[:, :3] * row[:, None]).sum(axis=0)
        f1.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
        repeat = row[study_of]
        expanded_scores, expanded_targets = np.repeat(scores, repeat), np.repeat(targets, repeat)
        value = binary_auroc(expanded_scores, expanded_targets)
        roc.append(np.nan if value is None else value)
    return np.array(f1), np.array(roc, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--questions", type=int, default=14, help="VQA questions per study")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, size=(args.studies, 3))
    study_of = np.repeat(np.arange(args.studies), args.questions)
    scores = rng.uniform(size=len(study_of)).round(3)  # rounded: tie groups, as real probabilities have
    targets = rng.integers(0, 2, size=len(study_of))
    weights = resample_weights(args.studies, args.resamples, seed=0)

    start = time.perf_counter()
    fast_f1 = evaluate_resamples(micro_f1(counts), weights)
    fast_auroc = evaluate_resamples(auroc(study_of, scores, targets), weights)
    vectorised = time.perf_counter() - start
    start = time.perf_counter()
    slow_f1, slow_auroc = naive(counts, study_of, scores, targets, weights)
    loop = time.perf_counter() - start
    assert np.allclose(fast_f1, slow_f1) and np.allclose(fast_auroc, slow_auroc, equal_nan=True)
    print(f"{args.studies} studies x {args.questions} questions, {args.resamples} resamples (micro F1 + AUROC)")
    print(f"vectorised {vectorised:.2f} s, per-resample loop {loop:.2f} s: {loop / vectorised:.1f}x")


if __name__ == "__main__":
    main()
