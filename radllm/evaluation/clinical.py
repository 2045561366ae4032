"""Clinical efficacy for `radllm evaluate`: the scoring primitive and the ``ce_*`` keys.

They live in `radllm.clinical_efficacy`, among the foundations, because layers below evaluation
score with them too (the VQ-GAN's code probe, the trainer's report samples); the evaluation
modules import them from here.
"""

from radllm.clinical_efficacy import (
    FN,
    FP,
    TN,
    TP,
    UNCERTAIN_POLICIES,
    Confusion,
    averaged_scores,
    binarize,
    clinical_efficacy,
    confusion_tables,
    pair_counts,
)

__all__ = [
    "FN", "FP", "TN", "TP", "UNCERTAIN_POLICIES", "Confusion", "averaged_scores", "binarize", "clinical_efficacy",
    "confusion_tables", "pair_counts",
]
