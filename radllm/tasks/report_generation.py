"""Report generation (image codes → report).

Prompt: start token, one image block per input view, and in stage 2 an instruction from
`REPORT_INSTRUCTIONS`. Response: the report's token ids and eos. Generation builds the prompt
with `report_generation_prompt` on `select_input_views(views, max_views)` of a study.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.tasks.config import REPORT_GENERATION, TaskMixConfig, check_stage
from radllm.tasks.example import TaskExample, prompt_response_example
from radllm.tasks.randomness import Rng
from radllm.tasks.study import checked_views
from radllm.tasks.templates import REPORT_INSTRUCTIONS, pick_template
from radllm.tasks.tokens import end_id, image_blocks, report_token_ids, start_id
from radllm.tasks.views import select_input_views
from radllm.vocab import encode_report
from radllm.vocab_spec import VisualVocabSpec


def report_generation_prompt(
    image_codes: Sequence[np.ndarray],
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    stage: int,
    template: int | Rng | None = None,
) -> list[int]:
    """Prompt ids for writing a report from the given views' codes.

    Args:
        image_codes: [grid_h, grid_w] code arrays, in the order they are shown.
        stage: 1 (image blocks only) or 2 (image blocks + instruction).
        template: stage-2 instruction: index into `REPORT_INSTRUCTIONS`, an rng to draw one, or
            None for the first. Ignored in stage 1.
    """
    check_stage(stage)
    if not image_codes:
        raise ValueError("a report prompt needs at least one image")
    ids = [start_id(tokenizer), *image_blocks(image_codes, spec)]
    if stage == 2:
        ids.extend(encode_report(tokenizer, pick_template(REPORT_INSTRUCTIONS, template)))
    return ids


def report_generation(
    study: TokenizedStudy,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    rng: Rng,
    config: TaskMixConfig,
) -> list[TaskExample]:
    """One example, or none when the study has no image or an empty report."""
    views = checked_views(study, spec)
    report = report_token_ids(study.report_ids, spec, f"study {study.key}")
    if not views or not report:
        return []
    chosen = select_input_views(views, config.max_views)
    prompt = report_generation_prompt([study.image_codes[i] for i in chosen], tokenizer, spec, config.stage, rng)
    return [prompt_response_example(prompt, [*report, end_id(tokenizer)], REPORT_GENERATION, study.key)]
