"""Report generation (image codes → report).

Prompt: start token, in stage 2 an instruction from `REPORT_INSTRUCTIONS`, then one image block
per input view. Response: the report's token ids and eos. The report follows the image block
directly in both stages (the instruction comes first, as in image generation and VQA), so what
stage 1 learns about reading the image carries over to stage 2 unchanged; with the instruction
between image and report, stage 2 started from a model whose reading no longer applied (own-image
report NLL gain 3.0 nats at the end of the demo's stage 1, 0.9 after 40 stage-2 steps).
Generation builds the prompt with `report_generation_prompt` on `select_input_views(views,
max_views)` of a study.

Unconditional prompt (a `tasks.report_drop_prob` fraction of examples): the image blocks are
replaced by one empty block, ``<boi><eoi>`` (an image that shows nothing, distinct from the
text-only LM's bare start token). Guided decoding (`radllm generate reports --cfg-scale`) runs
`unconditional_report_prompt` beside every conditional prompt and moves each next-token score
away from what the report would say without the image: the same classifier-free guidance as
report -> image, here in the image -> report direction.

The response follows `tasks.report_format` (sections as written, or impression first), weighs the
impression's tokens by `tasks.impression_weight` and the sentences that affirm a finding by
`tasks.finding_weight`, and corrupts a `tasks.word_dropout` fraction of its teacher-forced inputs
(`report_response`, `drop_words`); with the defaults it is exactly the shard's `report_ids` and
eos, unweighted.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.labeler.coherence import SENTENCE_SPLIT, affirms_a_finding
from radllm.report_text import FINDINGS_TAG, IMPRESSION_TAG, report_text, split_report_text
from radllm.tasks.config import TaskMixConfig, check_choice, check_loss_weight, check_probability
from radllm.tasks.example import (
    Rng,
    TaskExample,
    check_stage,
    checked_views,
    draw_index,
    draw_unit,
    end_id,
    image_blocks,
    pick_template,
    prompt_response_example,
    report_token_ids,
    select_input_views,
    start_id,
    with_donor_images,
)
from radllm.tasks.registry import TaskSpec, register_task
from radllm.vocab import encode_report
from radllm.vocab_spec import VisualVocabSpec


REPORT_GENERATION = "report_generation"

AS_WRITTEN = "as_written"
IMPRESSION_FIRST = "impression_first"
REPORT_FORMATS = (AS_WRITTEN, IMPRESSION_FIRST)  # values of tasks.report_format
AFFIRMED_FIRST = "affirmed_first"
FINDINGS_ORDERS = (AS_WRITTEN, AFFIRMED_FIRST)  # values of tasks.findings_order

#: Stage 2: precedes the image block(s), then the report is the response. Append new phrasings at
#: the end (`pick_template`).
REPORT_INSTRUCTIONS: tuple[str, ...] = (
    "Write the radiology report for this chest X-ray.\n",
    "Describe the findings and impression of this chest radiograph.\n",
    "Generate a report for the following chest X-ray.\n",
    "What does this chest X-ray show? Write a full report.\n",
    "Provide the findings and impression for this study.\n",
)


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
        stage: 1 (image blocks only) or 2 (instruction, then image blocks).
        template: stage-2 instruction: index into `REPORT_INSTRUCTIONS`, an rng to draw one, or
            None for the first. Ignored in stage 1.
    """
    check_stage(stage)
    if not image_codes:
        raise ValueError("a report prompt needs at least one image")
    return [*_report_prompt_start(tokenizer, stage, template), *image_blocks(image_codes, spec)]


def _report_prompt_start(tokenizer: PreTrainedTokenizerBase, stage: int, template: int | Rng | None) -> list[int]:
    """Start token and (stage 2) the instruction: what precedes the image blocks."""
    ids = [start_id(tokenizer)]
    if stage == 2:
        ids.extend(encode_report(tokenizer, pick_template(REPORT_INSTRUCTIONS, template)))
    return ids


def unconditional_report_prompt(
    tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, stage: int, template: int | Rng | None = None
) -> list[int]:
    """Prompt ids of the dropped-image branch: start, in stage 2 the instruction, ``<boi><eoi>``."""
    check_stage(stage)
    return [*_report_prompt_start(tokenizer, stage, template), spec.boi_id, spec.eoi_id]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def token_boundary(tokenizer: PreTrainedTokenizerBase, prefix: str, ids: Sequence[int]) -> int:
    """How many of `ids` (the encoding of a text that starts with `prefix`) encode `prefix`: the
    ids the prefix's own encoding shares with the whole. At a space every tokenizer family
    encodes the prefix as the whole does, so sections and sentences map onto token ranges."""
    return _common_prefix(encode_report(tokenizer, prefix), ids)


def finding_sentence_weights(tokenizer: PreTrainedTokenizerBase, text: str, ids: Sequence[int], weight: float) -> list[float]:
    """Per-id factor: `weight` on the ids of each sentence of `text` that affirms a finding
    (`radllm.labeler.coherence.affirms_a_finding`), 1.0 elsewhere. A sentence runs from after
    the previous sentence's end to its own (a section tag belongs to the sentence it opens)."""
    factors = [1.0] * len(ids)
    ends = [m.start() for m in SENTENCE_SPLIT.finditer(text)] + [len(text)]
    start_char, start_id = 0, 0
    for end in ends:
        end_id = len(ids) if end == len(text) else token_boundary(tokenizer, text[:end], ids)
        if affirms_a_finding(text[start_char:end]):
            factors[start_id:end_id] = [weight] * (end_id - start_id)
        start_char, start_id = end, end_id
    return factors


def affirmed_first(section: str) -> str:
    """`section` with its sentences that affirm a finding moved to the front, both groups in written order."""
    sentences = [part for part in SENTENCE_SPLIT.split(section.strip()) if part]
    affirming = [affirms_a_finding(sentence) for sentence in sentences]
    return " ".join([s for s, a in zip(sentences, affirming) if a] + [s for s, a in zip(sentences, affirming) if not a])


def report_response(
    study: TokenizedStudy, tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, config: TaskMixConfig
) -> tuple[list[int], list[float] | None]:
    """Target ids of a study's report (report ids, eos) and their loss weights (None = all 1.0).

    With the defaults the ids are the shard's `report_ids`. Otherwise the report text is split
    into its sections and encoded again in the configured order (`tasks.report_format`, and
    `tasks.findings_order` within the findings); the impression's tokens are
    those the first section's own encoding shares with the whole (`token_boundary`), and the
    sentences that affirm a finding are found the same way (`finding_sentence_weights`). An
    untagged report is one section and stays the shard's ids.
    """
    report = report_token_ids(study.report_ids, spec, f"study {study.key}")
    defaults = (config.report_format, config.findings_order, config.impression_weight, config.finding_weight) == (AS_WRITTEN, AS_WRITTEN, 1.0, 1.0)
    if not report or defaults:
        return [*report, end_id(tokenizer)], None
    findings, impression = split_report_text(study.report)
    both = bool(findings and impression)
    impression_first = config.report_format == IMPRESSION_FIRST and both
    if FINDINGS_TAG in study.report or IMPRESSION_TAG in study.report:
        if config.findings_order == AFFIRMED_FIRST and findings:
            findings = affirmed_first(findings)
        text = report_text(findings, impression, impression_first=impression_first)
    else:
        text = study.report  # untagged text is one section: its sentences stay where they are
    ids = report if text == study.report else encode_report(tokenizer, text)
    if both:
        first = report_text("", impression) if impression_first else report_text(findings, "")
        split = token_boundary(tokenizer, first, ids)
        first_weight, second_weight = (config.impression_weight, 1.0) if impression_first else (1.0, config.impression_weight)
        weights, eos_weight = [first_weight] * split + [second_weight] * (len(ids) - split), 1.0
    else:  # one section, or untagged text: no section order, one section weight
        eos_weight = config.impression_weight if impression else 1.0
        weights = [eos_weight] * len(ids)
    if config.finding_weight != 1.0:
        weights = [w * f for w, f in zip(weights, finding_sentence_weights(tokenizer, text, ids, config.finding_weight))]
    weights.append(eos_weight)
    return [*ids, end_id(tokenizer)], None if all(w == 1.0 for w in weights) else weights


def drop_words(example: TaskExample, first: int, rate: float, rng: Rng, vocab_size: int, excluded: Set[int]) -> TaskExample:
    """Word dropout on teacher-forced inputs: each input id at positions >= `first` is replaced,
    with probability `rate`, by a uniform id of [0, vocab_size) outside `excluded` (special
    tokens); labels stay the true tokens.

    With part of its own previous words corrupted, the model cannot predict a report from the
    report's beginning alone and has to take more of each next word from the image. The last
    position is never replaced (its input predicts nothing inside the example).
    """
    if rate <= 0:
        return example
    ids = list(example.input_ids)
    for position in range(first, len(ids) - 1):
        if draw_unit(rng) < rate:
            replacement = draw_index(rng, vocab_size)
            while replacement in excluded:
                replacement = draw_index(rng, vocab_size)
            ids[position] = replacement
    return TaskExample(input_ids=ids, labels=example.labels, task=example.task, key=example.key, weights=example.weights)


def report_generation(
    study: TokenizedStudy,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    rng: Rng,
    config: TaskMixConfig,
) -> list[TaskExample]:
    """One example, or none when the study has no image or an empty report."""
    views = checked_views(study, spec)
    response, weights = report_response(study, tokenizer, spec, config)
    if not views or len(response) < 2:  # eos alone: the study has no report text
        return []
    if config.report_drop_prob > 0 and draw_unit(rng) < config.report_drop_prob:
        prompt = unconditional_report_prompt(tokenizer, spec, config.stage, rng)
    else:
        chosen = select_input_views(views, config.max_views)
        prompt = report_generation_prompt([study.image_codes[i] for i in chosen], tokenizer, spec, config.stage, rng)
    example = prompt_response_example(prompt, response, REPORT_GENERATION, study.key, weights)
    if config.word_dropout > 0:
        example = drop_words(example, len(prompt), config.word_dropout, rng, spec.text_vocab_size, set(tokenizer.all_special_ids))
    return [example]


def _validate_options(config: TaskMixConfig) -> None:
    check_probability(config, "report_drop_prob")
    check_choice(config, "report_format", REPORT_FORMATS)
    check_choice(config, "findings_order", FINDINGS_ORDERS)
    check_loss_weight(config, "impression_weight")
    check_loss_weight(config, "finding_weight")
    if not 0.0 <= config.word_dropout < 1.0:
        raise RadllmError(f"tasks.word_dropout = {config.word_dropout}; expected a rate in [0, 1)")


SPEC = register_task(TaskSpec(
    REPORT_GENERATION, report_generation, position=0, default_weight=1.0, reads_images=True,
    donor_input=with_donor_images, validate_options=_validate_options,
))
