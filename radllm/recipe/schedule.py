"""The learning-rate schedule of every radllm trainer: linear warmup, then cosine decay."""

from __future__ import annotations

import math


def warmup_cosine(step: int, peak: float, warmup_steps: int, total_steps: int, final_ratio: float) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup to `peak`, cosine decay to `peak * final_ratio`.

    Step 0 already trains at `peak / warmup_steps` (a zero first step would waste a batch); the
    decay ends at `total_steps` and the rate stays at its floor after it. The LLM trainer asks for
    the multiplier of its base rate (`peak` 1.0, as `LambdaLR` wants), the VQ-GAN and CXR encoder
    for the rate itself; the expression order is the one each used before, so their numbers are
    bit-identical to theirs.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak * (final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
