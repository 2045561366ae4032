"""Image generation (report → image codes), with the condition dropped for classifier-free guidance.

Prompt (conditional):
    stage 1: start, condition ids
    stage 2: start, ids(text before {report}), condition ids, ids(text after {report})   (IMAGE_INSTRUCTIONS)
The condition is the report, or with `tasks.image_condition: impression` its impression alone
(``IMPRESSION: <i>``; `image_condition_text`), the positive findings without the negations that
name every finding a normal image does not show.
Prompt (unconditional, a `cfg_drop_prob` fraction of examples):
    stage 1: start                                     (nothing but the start token)
    stage 2: start, ids(UNCONDITIONAL_IMAGE_INSTRUCTION)  (a fixed instruction with no report)
Response: ``<boi>``, the H×W image-token ids of the target view (first frontal, else view 0),
``<eoi>``. No eos follows: ``<eoi>`` ends an image.

CFG sampling at generation time runs the model on `image_generation_prompt(...)` and on
`unconditional_image_prompt(...)` for the same stage; these are the functions training uses, so
both branches see exactly the prompts the model was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.report_text import report_text, split_report_text
from radllm.tasks.config import TaskMixConfig, check_choice, check_loss_weight, check_probability
from radllm.tasks.example import (
    Rng,
    TaskExample,
    check_stage,
    checked_views,
    draw_unit,
    image_block,
    pick_template,
    prompt_response_example,
    report_token_ids,
    select_target_view,
    start_id,
)
from radllm.tasks.registry import TaskSpec, register_task
from radllm.vocab import encode_report
from radllm.vocab_spec import VisualVocabSpec


IMAGE_GENERATION = "image_generation"

FULL_REPORT = "report"
IMPRESSION = "impression"
IMAGE_CONDITIONS = (FULL_REPORT, IMPRESSION)  # values of tasks.image_condition
#: Key of an exported model's config.json holding the `image_condition` it was trained with, so
#: that `radllm generate images` builds the same prompts without being told (HF keeps unknown keys).
IMAGE_CONDITION_KEY = "radllm_image_condition"

#: Stage 2: `{report}` is replaced by the report's token ids (never re-tokenized together with
#: the instruction, so the report tokens are identical to the shard's). The report sits between
#: line breaks, not after a space, so no tokenizer has to encode a dangling space. Append new
#: phrasings at the end (`pick_template`).
IMAGE_INSTRUCTIONS: tuple[str, ...] = (
    "Generate a chest X-ray that matches this report:\n{report}\n",
    "Draw the chest radiograph described by the following report.\n{report}\n",
    "Report:\n{report}\nCreate the corresponding chest X-ray.\n",
    "Produce a frontal chest X-ray consistent with this report:\n{report}\n",
)

#: Stage 2, the unconditional image prompt used for classifier-free guidance (report dropped).
UNCONDITIONAL_IMAGE_INSTRUCTION = "Generate a chest X-ray.\n"

REPORT_SLOT = "{report}"


def split_report_slot(template: str) -> tuple[str, str]:
    """Text before and after `{report}` in an image-generation instruction."""
    if template.count(REPORT_SLOT) != 1:
        raise ValueError(f"image instruction {template!r} must contain {REPORT_SLOT} exactly once")
    before, after = template.split(REPORT_SLOT)
    return before, after


def image_condition_text(report: str, condition: str) -> str:
    """The report text an image prompt holds under `condition` (``tasks.image_condition``).

    ``impression``: ``"IMPRESSION: <i>"`` when the report has an impression, else the report
    unchanged (a report without sections is its own condition). ``report``: the report.
    Training and `radllm generate images` both go through this function.
    """
    if condition not in IMAGE_CONDITIONS:
        raise ValueError(f"image condition {condition!r} is not one of {IMAGE_CONDITIONS}")
    if condition == IMPRESSION:
        impression = split_report_text(report)[1]
        if impression:
            return report_text("", impression)
    return report


def image_generation_prompt(
    report: str | Sequence[int] | np.ndarray,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    stage: int,
    template: int | Rng | None = None,
) -> list[int]:
    """Conditional prompt ids for drawing the image a report describes.

    Args:
        report: report text (tokenized without special tokens, as shards do) or its token ids.
        stage: 1 (report only) or 2 (report inside an instruction).
        template: stage-2 instruction: index into `IMAGE_INSTRUCTIONS`, an rng to draw one, or
            None for the first. Ignored in stage 1.
    """
    check_stage(stage)
    report_ids = encode_report(tokenizer, report) if isinstance(report, str) else report_token_ids(report, spec)
    if not report_ids:
        raise ValueError("an image prompt needs a non-empty report; use unconditional_image_prompt for the CFG branch")
    if stage == 1:
        return [start_id(tokenizer), *report_ids]
    before, after = split_report_slot(pick_template(IMAGE_INSTRUCTIONS, template))
    return [start_id(tokenizer), *encode_report(tokenizer, before), *report_ids, *encode_report(tokenizer, after)]


def unconditional_image_prompt(tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, stage: int) -> list[int]:
    """Prompt ids of the dropped-condition branch (see the module docstring for the exact form).

    `spec` is taken so the CFG caller passes the same (tokenizer, spec, stage) triple to both
    prompt builders; the unconditional form itself holds no image tokens.
    """
    check_stage(stage)
    del spec
    if stage == 1:
        return [start_id(tokenizer)]
    return [start_id(tokenizer), *encode_report(tokenizer, UNCONDITIONAL_IMAGE_INSTRUCTION)]


def image_generation(
    study: TokenizedStudy,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    rng: Rng,
    config: TaskMixConfig,
) -> list[TaskExample]:
    """One example (conditional, or unconditional with probability `cfg_drop_prob`), or none
    when the study has no image or an empty report."""
    views = checked_views(study, spec)
    report = report_token_ids(study.report_ids, spec, f"study {study.key}")
    if not views or not report:
        return []
    target = select_target_view(views)
    response = image_block(study.image_codes[target], spec)
    if draw_unit(rng) < config.cfg_drop_prob:
        prompt = unconditional_image_prompt(tokenizer, spec, config.stage)
    else:
        condition = report if config.image_condition == FULL_REPORT else image_condition_text(study.report, config.image_condition)
        prompt = image_generation_prompt(condition, tokenizer, spec, config.stage, rng)
    return [prompt_response_example(prompt, response, IMAGE_GENERATION, study.key, config.image_loss_weight)]


def with_donor_report(study: TokenizedStudy, donor: TokenizedStudy) -> TokenizedStudy:
    """`study` conditioned on `donor`'s report (its image, the target, stays its own)."""
    return replace(study, report=donor.report, report_ids=donor.report_ids)


def _validate_options(config: TaskMixConfig) -> None:
    check_probability(config, "cfg_drop_prob")
    check_choice(config, "image_condition", IMAGE_CONDITIONS)
    check_loss_weight(config, "image_loss_weight")


SPEC = register_task(TaskSpec(
    IMAGE_GENERATION, image_generation, position=1, default_weight=1.0, reads_images=False,
    donor_input=with_donor_report, validate_options=_validate_options,
))
