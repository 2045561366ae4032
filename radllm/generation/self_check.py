"""Best of N drawings, judged by the model's own reading of each one.

A model that draws from a report can also read an image back into text. Drawing N candidates per
study and keeping the one from which the model would most likely write the requested condition
text (the report or its impression, exactly as the image prompt holds it) turns the reading
direction into a check on the drawing direction: a candidate that shows too little of what was
asked, or something else, reads back worse. No outside model is involved, so it applies to any
radllm model and dataset; it costs N drawings per study, and the N readings of a batch are
scored together in one packed pass (the grounding diagnostic's scorer).

Candidate 0 uses the study's own sampling stream, so N = 1 is exactly plain generation, and the
other candidates' streams are keyed by (study, candidate index): the choice does not depend on
batch composition or rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from radllm.generation.model import Generator
from radllm.modeling.packed_nll import PackedScoring, per_example_nll
from radllm.tasks import prompt_response_example, report_generation_prompt
from radllm.vocab import encode_report

TASK = "self_check"
READING_TOKENS = 8192  # tokens per scoring forward


def candidate_key(key: str, candidate: int) -> str:
    """Sampling key of one candidate: the study's own key for candidate 0."""
    return key if candidate == 0 else f"{key}#candidate{candidate}"


def reading_nll(gen: Generator, codes: torch.Tensor, texts: Sequence[str], stage: int) -> torch.Tensor:
    """Mean NLL per token (nats) of writing `texts[i]` from the image `codes[i]` ([N, H, W]).

    The prompt is the report-generation prompt of the same stage (stage 2: the first report
    instruction), so the model reads the candidate exactly as it reads an X-ray; the text is
    scored as its response.
    """
    examples = [
        prompt_response_example(
            report_generation_prompt([grid.cpu().numpy()], gen.tokenizer, gen.spec, stage, 0),
            encode_report(gen.tokenizer, text), TASK, str(index),
        )
        for index, (grid, text) in enumerate(zip(codes, texts))
    ]
    attention = getattr(gen.model.config, "_attn_implementation", None) or "sdpa"
    # Rows as long as the longest reading: packing several readings into long rows would make
    # attention (a block-diagonal mask over the whole row) cost row length squared for nothing.
    longest = max(len(example) for example in examples)
    scoring = PackedScoring(attention, gen.model.dtype, gen.device, tokens_per_row=longest, rows_per_batch=max(1, READING_TOKENS // longest))
    sums, counts = per_example_nll(gen.model, examples, gen.pad_id, scoring)
    return (sums / counts.clamp_min(1)).float()


def pick_best(candidate_codes: Sequence[torch.Tensor], scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each study, the candidate with the lowest reading NLL.

    Args:
        candidate_codes: N tensors [B, H, W], candidate c of every study.
        scores: [N, B] reading NLL of each candidate.

    Returns:
        codes [B, H, W] of the chosen candidates and their indices [B].
    """
    stacked = torch.stack(list(candidate_codes))  # [N, B, H, W]
    chosen = scores.argmin(dim=0)  # [B]; ties go to the lower index, so candidate 0 wins a tie
    return stacked[chosen, torch.arange(stacked.shape[1])], chosen
