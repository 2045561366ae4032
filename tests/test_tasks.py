"""Tasks: exact token layouts, loss masks, CFG drop rate, VQA from labels, templates, task mix."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from radllm.config import load_config
from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, empty_labels
from radllm.tasks import (
    ANSWERS,
    IGNORE_INDEX,
    LABEL_OF_ANSWER,
    TASK_NAMES,
    TaskExample,
    TaskMixConfig,
    TaskMixer,
    TaskSpec,
    answer_ids,
    image_condition_text,
    image_generation,
    image_generation_prompt,
    report_generation,
    report_generation_prompt,
    select_input_views,
    task_spec,
    task_specs,
    text_lm,
    unconditional_image_prompt,
    unconditional_report_prompt,
    vqa,
    vqa_prompt,
    vqa_questions,
)
from radllm.tasks.image_generation import FULL_REPORT, IMAGE_INSTRUCTIONS, UNCONDITIONAL_IMAGE_INSTRUCTION
from radllm.tasks.mix import NO_APPLICABLE_TASK, SKIPPED_INVALID
from radllm.tasks.registry import register_task
from radllm.tasks.report_generation import AS_WRITTEN, REPORT_INSTRUCTIONS
from radllm.tasks.vqa import VQA_QUESTIONS
from radllm.vocab_spec import VisualVocabSpec, image_token

GRID = (2, 3)
CODEBOOK = 16
REPORTS = (
    "The heart is normal in size. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Small left pleural effusion. No pneumothorax.",
    "Lungs are clear. Support devices in place.",
)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the template texts, extended with <boi>/<eoi>/<img_k>."""
    corpus = [*REPORT_INSTRUCTIONS, *IMAGE_INSTRUCTIONS, UNCONDITIONAL_IMAGE_INSTRUCTION, *REPORTS, "yes no uncertain"]
    corpus += [q for qs in VQA_QUESTIONS.values() for q in qs]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": ["<boi>", "<eoi>", *(image_token(k) for k in range(CODEBOOK))]})
    return tok


@pytest.fixture(scope="module")
def spec(tokenizer: PreTrainedTokenizerFast) -> VisualVocabSpec:
    ids = tokenizer.convert_tokens_to_ids(["<boi>", "<eoi>", image_token(0), image_token(CODEBOOK - 1)])
    assert ids[3] - ids[2] == CODEBOOK - 1  # image tokens are contiguous
    return VisualVocabSpec(
        codebook_size=CODEBOOK, grid_height=GRID[0], grid_width=GRID[1], image_size=32, token_offset=ids[2],
        boi_id=ids[0], eoi_id=ids[1], text_vocab_size=300, vocab_size=320,
    )


def make_study(tokenizer, key="s1", views=("PA",), report=REPORTS[0], labels=None, seed=0) -> TokenizedStudy:
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, CODEBOOK, size=GRID, dtype=np.int16) for _ in views]
    ids = np.asarray(tokenizer(report, add_special_tokens=False)["input_ids"], dtype=np.int32)
    return TokenizedStudy(
        key=key, study_id=key, split="train", image_codes=codes, views=list(views), report=report, report_ids=ids,
        labels=labels if labels is not None else empty_labels(),
    )


def prompt_len(example: TaskExample) -> int:
    return next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)


def decode_image_blocks(ids: list[int], spec: VisualVocabSpec) -> list[np.ndarray]:
    """Independent decoder: find <boi>…<eoi> runs and map ids back to code grids."""
    grids, i = [], 0
    while i < len(ids):
        if ids[i] == spec.boi_id:
            end = ids.index(spec.eoi_id, i)
            grids.append(np.array([spec.id_to_code(t) for t in ids[i + 1 : end]]).reshape(GRID))
            i = end
        i += 1
    return grids


def check_response_only_loss(example: TaskExample) -> None:
    n = prompt_len(example)
    assert all(label == IGNORE_INDEX for label in example.labels[:n])
    assert example.labels[n:] == example.input_ids[n:]


# --- report generation ---------------------------------------------------------------------------


def test_report_generation_stage1_exact_layout(tokenizer, spec):
    study = make_study(tokenizer)
    (ex,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1))
    codes = study.image_codes[0].reshape(-1).tolist()
    expected_prompt = [tokenizer.bos_token_id, spec.boi_id, *[spec.token_offset + c for c in codes], spec.eoi_id]
    expected = expected_prompt + study.report_ids.tolist() + [tokenizer.eos_token_id]
    assert ex.input_ids == expected
    assert ex.labels == [IGNORE_INDEX] * len(expected_prompt) + expected[len(expected_prompt) :]
    assert ex.task == "report_generation" and ex.key == "s1"
    assert tokenizer.decode(ex.input_ids[len(expected_prompt) : -1]) == study.report


SECTIONED = "FINDINGS: The heart is normal in size. No pleural effusion. IMPRESSION: Mild cardiomegaly. Small left pleural effusion."


def response_of(example: TaskExample) -> tuple[list[int], list[float] | None]:
    n = prompt_len(example)
    return example.labels[n:], None if example.weights is None else example.weights[n:]


def test_impression_first_targets_reorder_sections_and_weigh_the_impression(tokenizer, spec):
    study = make_study(tokenizer, report=SECTIONED)
    config = TaskMixConfig(stage=1, report_format="impression_first", impression_weight=3.0)
    (ex,) = report_generation(study, tokenizer, spec, random.Random(0), config)
    response, weights = response_of(ex)
    assert tokenizer.decode(response[:-1]) == "IMPRESSION: Mild cardiomegaly. Small left pleural effusion. FINDINGS: The heart is normal in size. No pleural effusion."
    assert response[-1] == tokenizer.eos_token_id and response == ex.input_ids[prompt_len(ex):]
    n_impression = len(tokenizer("IMPRESSION: Mild cardiomegaly. Small left pleural effusion.", add_special_tokens=False)["input_ids"])
    assert weights == [3.0] * n_impression + [1.0] * (len(response) - n_impression)
    assert ex.weights[: prompt_len(ex)] == [0.0] * prompt_len(ex)  # prompt positions carry no loss anyway


def test_as_written_targets_keep_the_shard_ids_and_weigh_the_impression_suffix(tokenizer, spec):
    study = make_study(tokenizer, report=SECTIONED)
    (ex,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1, impression_weight=2.0))
    response, weights = response_of(ex)
    assert response == [*study.report_ids.tolist(), tokenizer.eos_token_id]
    n_findings = len(tokenizer("FINDINGS: The heart is normal in size. No pleural effusion.", add_special_tokens=False)["input_ids"])
    assert weights == [1.0] * n_findings + [2.0] * (len(response) - 1 - n_findings) + [1.0]
    (plain,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1))
    assert plain.weights is None and plain.input_ids == ex.input_ids


def n_ids(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_sentences_that_affirm_a_finding_are_weighted_within_their_section(tokenizer, spec):
    """Hand-placed sentence boundaries: each sentence's ids counted by encoding the text up to it."""
    report = "FINDINGS: Small left pleural effusion. No pneumothorax. IMPRESSION: Left pleural effusion."
    study = make_study(tokenizer, report=report)
    (ex,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1, finding_weight=2.0))
    response, weights = response_of(ex)
    assert response == [*study.report_ids.tolist(), tokenizer.eos_token_id]
    a = n_ids(tokenizer, "FINDINGS: Small left pleural effusion.")
    b = n_ids(tokenizer, "FINDINGS: Small left pleural effusion. No pneumothorax.")
    assert weights == [2.0] * a + [1.0] * (b - a) + [2.0] * (len(response) - 1 - b) + [1.0]
    # impression first: the factor multiplies the section's weight; negated sentences keep it
    config = TaskMixConfig(stage=1, report_format="impression_first", impression_weight=3.0, finding_weight=2.0)
    (ex,) = report_generation(make_study(tokenizer, report=SECTIONED), tokenizer, spec, random.Random(0), config)
    response, weights = response_of(ex)
    n_impression = n_ids(tokenizer, "IMPRESSION: Mild cardiomegaly. Small left pleural effusion.")
    assert weights == [6.0] * n_impression + [1.0] * (len(response) - n_impression)
    # an untagged report keeps its shard ids; its affirming sentence is weighted
    untagged = make_study(tokenizer, report="Lungs are clear. Mild cardiomegaly.")
    (ex,) = report_generation(untagged, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1, finding_weight=2.0))
    response, weights = response_of(ex)
    assert response == [*untagged.report_ids.tolist(), tokenizer.eos_token_id]
    clear = n_ids(tokenizer, "Lungs are clear.")
    assert weights == [1.0] * clear + [2.0] * (len(response) - 1 - clear) + [1.0]
    # nothing affirmed: no weights at all
    (ex,) = report_generation(make_study(tokenizer, report="FINDINGS: No pneumothorax."), tokenizer, spec, random.Random(0),
                              TaskMixConfig(stage=1, finding_weight=2.0))
    assert ex.weights is None


def test_affirmed_first_moves_the_finding_sentences_to_the_front_of_the_findings(tokenizer, spec):
    report = ("FINDINGS: The heart is normal in size. Small left pleural effusion. No pneumothorax. Possible right basilar atelectasis. "
              "IMPRESSION: Small left pleural effusion. Possible right basilar atelectasis.")
    expected = ("IMPRESSION: Small left pleural effusion. Possible right basilar atelectasis. FINDINGS: Small left pleural effusion. "
                "Possible right basilar atelectasis. The heart is normal in size. No pneumothorax.")
    config = TaskMixConfig(stage=1, report_format="impression_first", findings_order="affirmed_first")
    (ex,) = report_generation(make_study(tokenizer, report=report), tokenizer, spec, random.Random(0), config)
    response, weights = response_of(ex)
    assert tokenizer.decode(response[:-1]) == expected and weights is None
    as_written = TaskMixConfig(stage=1, findings_order="affirmed_first")
    (ex,) = report_generation(make_study(tokenizer, report=report), tokenizer, spec, random.Random(0), as_written)
    assert tokenizer.decode(response_of(ex)[0][:-1]) == (
        "FINDINGS: Small left pleural effusion. Possible right basilar atelectasis. The heart is normal in size. No pneumothorax. "
        "IMPRESSION: Small left pleural effusion. Possible right basilar atelectasis.")
    untagged = make_study(tokenizer, report="Lungs are clear. Mild cardiomegaly.")  # one section: kept as written
    (ex,) = report_generation(untagged, tokenizer, spec, random.Random(0), as_written)
    assert response_of(ex)[0] == [*untagged.report_ids.tolist(), tokenizer.eos_token_id]


@pytest.mark.parametrize("report", ["Lungs are clear. No pleural effusion.", "IMPRESSION: Mild cardiomegaly.", "FINDINGS: Lungs are clear."])
def test_single_section_or_untagged_reports_keep_the_shard_ids(tokenizer, spec, report):
    study = make_study(tokenizer, report=report)
    config = TaskMixConfig(stage=1, report_format="impression_first", impression_weight=2.0)
    (ex,) = report_generation(study, tokenizer, spec, random.Random(0), config)
    response, weights = response_of(ex)
    assert response == [*study.report_ids.tolist(), tokenizer.eos_token_id]
    assert weights == (None if not report.startswith("IMPRESSION") else [2.0] * len(response))


def test_word_dropout_corrupts_only_teacher_forced_report_inputs(tokenizer, spec):
    study = make_study(tokenizer, report=SECTIONED)
    config = TaskMixConfig(stage=1, word_dropout=0.3)
    (clean,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1))
    n = prompt_len(clean)
    replaced, positions = 0, 0
    for seed in range(200):
        (ex,) = report_generation(study, tokenizer, spec, random.Random(seed), config)
        assert ex.labels == clean.labels and ex.input_ids[:n] == clean.input_ids[:n]
        assert ex.input_ids[-1] == clean.input_ids[-1]  # the last input predicts nothing
        changed = [i for i in range(n, len(ex) - 1) if ex.input_ids[i] != clean.input_ids[i]]
        assert all(ex.input_ids[i] < spec.text_vocab_size and ex.input_ids[i] not in tokenizer.all_special_ids for i in changed)
        replaced += len(changed)
        positions += len(ex) - 1 - n
    assert replaced / positions == pytest.approx(0.3 * (1 - 1 / 297), abs=0.03)  # a draw of the same id is no change


def test_image_loss_weight_applies_to_the_image_block(tokenizer, spec):
    study = make_study(tokenizer)
    (ex,) = image_generation(study, tokenizer, spec, random.Random(1), TaskMixConfig(stage=1, cfg_drop_prob=0.0, image_loss_weight=0.25))
    response, weights = response_of(ex)
    assert len(response) == GRID[0] * GRID[1] + 2 and weights == [0.25] * len(response)


def test_multi_view_gives_one_block_per_view_frontal_first_and_capped(tokenizer, spec):
    study = make_study(tokenizer, views=("LATERAL", "PA", "AP"))
    (ex,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1, max_views=3))
    grids = decode_image_blocks(ex.input_ids, spec)
    assert len(grids) == 3 and ex.input_ids.count(spec.boi_id) == 3 and ex.input_ids.count(spec.eoi_id) == 3
    for grid, view in zip(grids, (1, 2, 0)):  # PA, AP, then LATERAL
        np.testing.assert_array_equal(grid, study.image_codes[view])
    (capped,) = report_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1, max_views=1))
    (grid,) = decode_image_blocks(capped.input_ids, spec)
    np.testing.assert_array_equal(grid, study.image_codes[1])
    assert select_input_views(["LATERAL", "LL"], 2) == [0, 1]


def test_stage2_report_instructions_vary_with_rng_and_match_prompt_builder(tokenizer, spec):
    study = make_study(tokenizer)
    config = TaskMixConfig(stage=2)
    candidates = [report_generation_prompt(study.image_codes, tokenizer, spec, 2, t) for t in range(len(REPORT_INSTRUCTIONS))]
    assert len({tuple(c) for c in candidates}) == len(REPORT_INSTRUCTIONS)
    seen = Counter()
    rng = random.Random(3)
    for _ in range(100):
        (ex,) = report_generation(study, tokenizer, spec, rng, config)
        check_response_only_loss(ex)
        seen[candidates.index(ex.input_ids[: prompt_len(ex)])] += 1  # raises if not a builder prompt
    assert set(seen) == set(range(len(REPORT_INSTRUCTIONS)))
    # Stage 2 = stage 1 with the instruction between the start token and the images, so the
    # report follows the image block directly in both stages.
    stage1 = report_generation_prompt(study.image_codes, tokenizer, spec, 1, random.Random(0))
    images = stage1[1:]
    assert candidates[0][0] == stage1[0] and candidates[0][-len(images) :] == images
    assert tokenizer.decode(candidates[0][1 : -len(images)]) == REPORT_INSTRUCTIONS[0]


# --- image generation ----------------------------------------------------------------------------


def test_image_generation_stage1_layout_targets_frontal_view(tokenizer, spec):
    study = make_study(tokenizer, views=("LATERAL", "PA"))
    (ex,) = image_generation(study, tokenizer, spec, random.Random(0), TaskMixConfig(stage=1, cfg_drop_prob=0.0))
    n = prompt_len(ex)
    assert ex.input_ids[:n] == [tokenizer.bos_token_id, *study.report_ids.tolist()]
    response = ex.input_ids[n:]
    assert response[0] == spec.boi_id and response[-1] == spec.eoi_id and len(response) == GRID[0] * GRID[1] + 2
    (grid,) = decode_image_blocks(response, spec)
    np.testing.assert_array_equal(grid, study.image_codes[1])
    check_response_only_loss(ex)


def test_image_condition_text_keeps_the_impression_or_the_whole_report():
    impression = "IMPRESSION: Mild cardiomegaly. Small left pleural effusion."
    assert image_condition_text(SECTIONED, "impression") == impression
    assert image_condition_text(f"{impression} FINDINGS: No pneumothorax.", "impression") == impression
    assert image_condition_text(SECTIONED, "report") == SECTIONED
    assert image_condition_text(REPORTS[0], "impression") == REPORTS[0]  # no sections: the report is its own condition
    assert image_condition_text("FINDINGS: Lungs are clear.", "impression") == "FINDINGS: Lungs are clear."
    with pytest.raises(ValueError, match="findings"):
        image_condition_text(SECTIONED, "findings")


@pytest.mark.parametrize("stage", [1, 2])
def test_impression_condition_prompts_with_the_impression_and_keeps_the_rest(tokenizer, spec, stage):
    study = make_study(tokenizer, report=SECTIONED)
    config = TaskMixConfig(stage=stage, cfg_drop_prob=0.0, image_condition="impression", image_loss_weight=0.5)
    (ex,) = image_generation(study, tokenizer, spec, random.Random(3), config)
    (full,) = image_generation(study, tokenizer, spec, random.Random(3), replace(config, image_condition="report"))
    impression = "IMPRESSION: Mild cardiomegaly. Small left pleural effusion."
    impression_ids = tokenizer(impression, add_special_tokens=False)["input_ids"]
    prompt = ex.input_ids[: prompt_len(ex)]
    if stage == 1:
        assert prompt == [tokenizer.bos_token_id, *impression_ids]
    else:  # the instruction drawn by the same rng, wrapped around the impression instead of the report
        template = next(t for t in IMAGE_INSTRUCTIONS if tokenizer.decode(full.input_ids[1 : prompt_len(full)]) == t.replace("{report}", SECTIONED))
        assert tokenizer.decode(prompt[1:]) == template.replace("{report}", impression)
    assert ex.input_ids[len(prompt) :] == full.input_ids[prompt_len(full) :]  # the same image block, the same targets
    assert ex.labels[len(prompt) :] == full.labels[prompt_len(full) :]
    assert ex.weights[len(prompt) :] == full.weights[prompt_len(full) :] == [0.5] * (GRID[0] * GRID[1] + 2)
    # The CFG branch holds no report either way; an untagged report is its own condition.
    (dropped,) = image_generation(study, tokenizer, spec, random.Random(3), replace(config, cfg_drop_prob=1.0))
    assert dropped.input_ids[: prompt_len(dropped)] == unconditional_image_prompt(tokenizer, spec, stage)
    plain = make_study(tokenizer)
    assert (image_generation(plain, tokenizer, spec, random.Random(3), config)[0].input_ids
            == image_generation(plain, tokenizer, spec, random.Random(3), replace(config, image_condition="report"))[0].input_ids)


@pytest.mark.parametrize("make_rng", [random.Random, np.random.default_rng], ids=["random", "numpy"])
def test_cfg_drop_fraction_matches_config(tokenizer, spec, make_rng):
    study = make_study(tokenizer)
    unconditional = unconditional_image_prompt(tokenizer, spec, 1)
    rng = make_rng(7)
    n, dropped = 3000, 0
    for _ in range(n):
        (ex,) = image_generation(study, tokenizer, spec, rng, TaskMixConfig(stage=1, cfg_drop_prob=0.25))
        dropped += ex.input_ids[: prompt_len(ex)] == unconditional
    assert abs(dropped / n - 0.25) < 0.03  # binomial sd = 0.008
    for p, expect in ((0.0, False), (1.0, True)):
        (ex,) = image_generation(study, tokenizer, spec, rng, TaskMixConfig(stage=1, cfg_drop_prob=p))
        assert (ex.input_ids[: prompt_len(ex)] == unconditional) is expect


def test_report_drop_replaces_the_images_by_an_empty_block_and_keeps_the_target(tokenizer, spec):
    study = make_study(tokenizer)
    config = TaskMixConfig(stage=2, report_drop_prob=0.3, report_format="impression_first", impression_weight=2.0)
    (kept,) = report_generation(study, tokenizer, spec, random.Random(0), replace(config, report_drop_prob=0.0))
    unconditional = {tuple(unconditional_report_prompt(tokenizer, spec, 2, t)) for t in range(len(REPORT_INSTRUCTIONS))}
    assert all(p[0] == tokenizer.bos_token_id and list(p[-2:]) == [spec.boi_id, spec.eoi_id] for p in unconditional)
    rng, n, dropped = random.Random(5), 2000, 0
    for _ in range(n):
        (ex,) = report_generation(study, tokenizer, spec, rng, config)
        prompt = ex.input_ids[: prompt_len(ex)]
        if tuple(prompt) in unconditional:
            dropped += 1
            assert not any(spec.token_offset <= t < spec.token_offset + spec.codebook_size for t in prompt)
        else:
            assert len(decode_image_blocks(prompt, spec)) == len(study.image_codes)
        assert response_of(ex) == response_of(kept)  # same report ids and weights either way
    assert abs(dropped / n - 0.3) < 0.035  # binomial sd = 0.010
    assert unconditional_report_prompt(tokenizer, spec, 1) == [tokenizer.bos_token_id, spec.boi_id, spec.eoi_id]
    # Off by default, and off it draws nothing: the rng stream of existing runs is unchanged.
    a, b = random.Random(9), random.Random(9)
    report_generation(study, tokenizer, spec, a, replace(config, report_drop_prob=0.0))
    report_generation(study, tokenizer, spec, b, TaskMixConfig(stage=2, report_format="impression_first", impression_weight=2.0))
    assert a.random() == b.random()
    with pytest.raises(RadllmError, match="tasks.report_drop_prob"):
        TaskMixConfig(report_drop_prob=1.5).validate()


def test_unconditional_and_conditional_prompts_are_exactly_the_training_prompts(tokenizer, spec):
    assert unconditional_image_prompt(tokenizer, spec, 1) == [tokenizer.bos_token_id]
    stage2_uncond = unconditional_image_prompt(tokenizer, spec, 2)
    assert stage2_uncond == [tokenizer.bos_token_id, *tokenizer(UNCONDITIONAL_IMAGE_INSTRUCTION, add_special_tokens=False)["input_ids"]]
    study = make_study(tokenizer)
    from_text = [image_generation_prompt(study.report, tokenizer, spec, 2, t) for t in range(len(IMAGE_INSTRUCTIONS))]
    from_ids = [image_generation_prompt(study.report_ids, tokenizer, spec, 2, t) for t in range(len(IMAGE_INSTRUCTIONS))]
    assert from_text == from_ids
    assert len({tuple(p) for p in from_text}) == len(IMAGE_INSTRUCTIONS)
    for prompt, template in zip(from_text, IMAGE_INSTRUCTIONS):
        assert tokenizer.decode(prompt[1:]) == template.replace("{report}", study.report)
    rng = random.Random(11)
    kinds = Counter()
    for _ in range(200):
        (ex,) = image_generation(study, tokenizer, spec, rng, TaskMixConfig(stage=2, cfg_drop_prob=0.2))
        prompt = ex.input_ids[: prompt_len(ex)]
        kinds["uncond" if prompt == stage2_uncond else from_text.index(prompt)] += 1
    assert set(kinds) == {"uncond", *range(len(IMAGE_INSTRUCTIONS))}


def test_prompt_builders_reject_bad_arguments(tokenizer, spec):
    study = make_study(tokenizer)
    with pytest.raises(ValueError, match="stage 3"):
        unconditional_image_prompt(tokenizer, spec, 3)
    with pytest.raises(ValueError, match="template index 9"):
        image_generation_prompt(study.report, tokenizer, spec, 2, 9)
    with pytest.raises(ValueError, match="non-empty report"):
        image_generation_prompt("", tokenizer, spec, 1)
    with pytest.raises(ValueError, match="at least one image"):
        report_generation_prompt([], tokenizer, spec, 1)


# --- VQA -------------------------------------------------------------------------------------------


def test_vqa_bank_covers_every_observation_with_several_phrasings():
    assert tuple(VQA_QUESTIONS) == OBSERVATIONS
    for name in OBSERVATIONS:
        phrasings = vqa_questions(name)
        assert len(set(phrasings)) >= 3 and all(q.endswith("?") for q in phrasings)
    assert {LABEL_OF_ANSWER[a] for a in ANSWERS.values()} == {1, 0, -1}
    with pytest.raises(ValueError, match="unknown observation"):
        vqa_questions("Broken Heart")


def test_vqa_asks_only_labelled_observations_and_answers_from_labels(tokenizer, spec):
    labels = empty_labels() | {"Cardiomegaly": 1, "Pleural Effusion": 0, "Edema": -1}
    study = make_study(tokenizer, views=("PA", "LATERAL"), labels=labels)
    examples = vqa(study, tokenizer, spec, random.Random(1), TaskMixConfig(vqa_questions_per_study=14))
    assert len(examples) == 3
    asked = {}
    for ex in examples:
        check_response_only_loss(ex)
        n = prompt_len(ex)
        assert len(decode_image_blocks(ex.input_ids[:n], spec)) == 2
        assert ex.input_ids[n - 1] == spec.eoi_id  # the answer follows the images; the question precedes them
        question = tokenizer.decode(ex.input_ids[1 : ex.input_ids.index(spec.boi_id)]).strip()
        (name,) = [obs for obs in OBSERVATIONS if question in vqa_questions(obs)]
        assert ex.input_ids[:n] == vqa_prompt(study.image_codes, question, tokenizer, spec)
        answer = tokenizer.decode(ex.input_ids[n:-1])
        assert ex.input_ids[-1] == tokenizer.eos_token_id
        assert ex.input_ids[n:] == answer_ids(tokenizer, answer)
        asked[name] = LABEL_OF_ANSWER[answer]
    assert asked == {"Cardiomegaly": 1, "Pleural Effusion": 0, "Edema": -1}
    blank = make_study(tokenizer)
    assert vqa(blank, tokenizer, spec, random.Random(1), TaskMixConfig(vqa_questions_per_study=14)) == []


def test_vqa_one_question_per_study_draws_varied_phrasings(tokenizer, spec):
    study = make_study(tokenizer, labels=empty_labels() | {"Pneumothorax": 0})
    rng = random.Random(5)
    questions = set()
    for _ in range(60):
        (ex,) = vqa(study, tokenizer, spec, rng, TaskMixConfig())
        questions.add(tokenizer.decode(ex.input_ids[1 : ex.input_ids.index(spec.boi_id)]).strip())
    assert questions == set(vqa_questions("Pneumothorax"))


# --- text LM and example invariants -----------------------------------------------------------------


def test_text_lm_trains_every_token_after_start(tokenizer, spec):
    study = make_study(tokenizer)
    (ex,) = text_lm(study, tokenizer, spec, random.Random(0), TaskMixConfig())
    assert ex.input_ids == [tokenizer.bos_token_id, *study.report_ids.tolist(), tokenizer.eos_token_id]
    assert ex.labels == [IGNORE_INDEX, *ex.input_ids[1:]]
    assert ex.n_targets == len(ex) - 1


def test_task_example_invariants():
    with pytest.raises(ValueError, match="3 input ids but 2 labels"):
        TaskExample([1, 2, 3], [-100, 2], "t", "k")
    with pytest.raises(ValueError, match="first label"):
        TaskExample([1, 2], [1, 2], "t", "k")


def test_tasks_skip_studies_they_cannot_use(tokenizer, spec):
    no_image = make_study(tokenizer, views=())
    empty_report = make_study(tokenizer, report="")
    config = TaskMixConfig(vqa_questions_per_study=2)
    for task in (report_generation, image_generation, vqa):
        assert task(no_image, tokenizer, spec, random.Random(0), config) == []
    for task in (report_generation, image_generation, text_lm):
        assert task(empty_report, tokenizer, spec, random.Random(0), config) == []


def test_invalid_studies_raise_clear_errors(tokenizer, spec):
    wrong_grid = make_study(tokenizer, key="badgrid")
    wrong_grid.image_codes[0] = np.zeros((4, 4), dtype=np.int16)
    with pytest.raises(RadllmError, match=r"study badgrid view 0: image codes of shape \(4, 4\) do not fit the 2x3 grid"):
        report_generation(wrong_grid, tokenizer, spec, random.Random(0), TaskMixConfig())
    out_of_book = make_study(tokenizer, key="badcode")
    out_of_book.image_codes[0][0, 0] = CODEBOOK
    with pytest.raises(RadllmError, match="outside the codebook"):
        image_generation(out_of_book, tokenizer, spec, random.Random(0), TaskMixConfig())
    foreign_ids = make_study(tokenizer, key="badids")
    foreign_ids.report_ids = np.array([5, 310], dtype=np.int32)
    with pytest.raises(RadllmError, match="badids: report ids span 5..310, outside the text vocabulary"):
        text_lm(foreign_ids, tokenizer, spec, random.Random(0), TaskMixConfig())
    mismatched = make_study(tokenizer, key="badviews", views=("PA", "LATERAL"))
    mismatched.views = ["PA"]
    with pytest.raises(RadllmError, match="2 code arrays but 1 view names"):
        vqa(mismatched, tokenizer, spec, random.Random(0), TaskMixConfig())


# --- task mix ---------------------------------------------------------------------------------------


def many_studies(tokenizer, n: int) -> list[TokenizedStudy]:
    labels = empty_labels() | {"Cardiomegaly": 1, "Edema": 0}
    return [make_study(tokenizer, key=f"s{i}", report=REPORTS[i % 3], labels=labels, seed=i) for i in range(n)]


def test_task_registry_holds_each_task_once_in_draw_order():
    # The draw order (part of every study's draw: changing it changes every run's data) is the
    # order the tasks had before the registry; each spec names its own builder.
    assert TASK_NAMES == ("report_generation", "image_generation", "vqa", "text_lm")
    assert [s.position for s in task_specs()] == [0, 1, 2, 3]
    builders = {"report_generation": report_generation, "image_generation": image_generation, "vqa": vqa, "text_lm": text_lm}
    assert {s.name: s.build for s in task_specs()} == builders
    assert [s.name for s in task_specs() if s.reads_images] == ["report_generation", "vqa"]
    assert [s.name for s in task_specs() if s.donor_input] == ["report_generation", "image_generation", "vqa"]
    assert TaskMixConfig().weights == {"report_generation": 1.0, "image_generation": 1.0, "vqa": 0.0, "text_lm": 0.0}
    assert (TaskMixConfig().report_format, TaskMixConfig().image_condition) == (AS_WRITTEN, FULL_REPORT)


def test_task_registry_refuses_a_taken_name_or_position():
    with pytest.raises(RadllmError, match="takes position 1, which 'image_generation' holds"):
        register_task(TaskSpec("findings_to_impression", text_lm, position=1))
    with pytest.raises(RadllmError, match="'vqa' is registered twice"):
        register_task(TaskSpec("vqa", vqa, position=2))
    with pytest.raises(RadllmError, match="unknown task 'nope'"):
        task_spec("nope")


def test_a_new_task_is_one_spec_that_config_mixer_and_validation_take_up(tokenizer, spec, monkeypatch):
    """"findings -> impression", registered as its own module would at import: the config accepts its
    weight (default 0), validates its options, and the mixer draws it; no other file names it."""
    import radllm.tasks.registry as registry
    from radllm.report_text import report_text, split_report_text
    from radllm.tasks import end_id, prompt_response_example, start_id
    from radllm.vocab import encode_report

    checked = []

    def findings_to_impression(study, tokenizer, spec, rng, config):
        findings, impression = split_report_text(study.report)
        if not (findings and impression):
            return []
        prompt = [start_id(tokenizer), *encode_report(tokenizer, findings)]
        return [prompt_response_example(prompt, [*encode_report(tokenizer, impression), end_id(tokenizer)], "findings_to_impression", study.key)]

    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))  # the registry as it was, after the test
    register_task(TaskSpec("findings_to_impression", findings_to_impression, position=4, validate_options=checked.append))
    assert task_spec("findings_to_impression").position == 4 and TaskMixConfig().weights["findings_to_impression"] == 0.0
    config = TaskMixConfig(weights={"report_generation": 0.0, "image_generation": 0.0, "findings_to_impression": 1.0}).validate()
    assert checked == [config]
    studies = [make_study(tokenizer, key=f"s{i}", report=report_text(REPORTS[i % 3], "Stable.")) for i in range(4)]
    examples = list(TaskMixer(tokenizer, spec, config, seed=0).examples(studies))
    assert examples and {e.task for e in examples} == {"findings_to_impression"}
    with pytest.raises(RadllmError, match="unknown task"):
        TaskMixConfig(weights={"findings_to_summary": 1.0}).validate()


def test_mix_proportions_follow_weights(tokenizer, spec):
    weights = {"report_generation": 2.0, "image_generation": 1.0, "vqa": 1.0, "text_lm": 0.0}
    mixer = TaskMixer(tokenizer, spec, TaskMixConfig(stage=2, weights=weights), seed=0)
    examples = list(mixer.examples(many_studies(tokenizer, 2000)))
    counts = Counter(ex.task for ex in examples)
    assert counts == Counter({k: v for k, v in mixer.counts.items() if k in TASK_NAMES})
    assert "text_lm" not in counts
    for name, expected in (("report_generation", 0.5), ("image_generation", 0.25), ("vqa", 0.25)):
        assert abs(counts[name] / 2000 - expected) < 0.04, counts


def test_mix_is_deterministic_per_seed_epoch_and_study(tokenizer, spec):
    studies = many_studies(tokenizer, 40)
    config = TaskMixConfig(stage=2, weights={"report_generation": 1.0, "image_generation": 1.0, "vqa": 1.0, "text_lm": 1.0})

    def run(seed, epoch, order):
        mixer = TaskMixer(tokenizer, spec, config, seed=seed)
        return {ex.key: (ex.task, ex.input_ids) for ex in mixer.examples([studies[i] for i in order], epoch=epoch)}

    forward = run(0, 0, range(40))
    assert run(0, 0, range(40)) == forward
    assert run(0, 0, reversed(range(40))) == forward  # independent of stream position
    assert run(1, 0, range(40)) != forward
    assert run(0, 1, range(40)) != forward


def test_joint_mix_is_the_union_of_the_stage_mixes_in_the_ratio_of_their_shares(tokenizer, spec):
    """Each study yields exactly the examples one stage's own mixer yields for it; stages drawn by share."""
    from radllm.tasks.config import JointStage

    stage1 = {"report_generation": 1.0, "image_generation": 0.6, "vqa": 0.35, "text_lm": 0.3}
    stage2 = {"report_generation": 1.0, "image_generation": 0.6, "vqa": 0.5, "text_lm": 0.3}
    shared = {"vqa_questions_per_study": 3, "report_format": "impression_first", "impression_weight": 3.0, "prompt_image_weight": 0.3}
    joint = TaskMixConfig(stage=1, weights=stage1, joint=[JointStage(1, 600.0, stage1), JointStage(2, 80.0, stage2)], **shared)
    studies = many_studies(tokenizer, 1500)
    mixers = {stage: TaskMixer(tokenizer, spec, TaskMixConfig(stage=stage, weights=weights, **shared), seed=3)
              for stage, weights in ((1, stage1), (2, stage2))}
    joint_mixer = TaskMixer(tokenizer, spec, joint, seed=3)
    drawn = Counter()
    for study in studies:
        got = [(ex.task, ex.input_ids, ex.labels, ex.weights) for ex in joint_mixer.study_examples(study, epoch=1)]
        stage = joint_mixer.study_mix(study, epoch=1).stage
        drawn[stage] += 1
        expected = [(ex.task, ex.input_ids, ex.labels, ex.weights) for ex in mixers[stage].study_examples(study, epoch=1)]
        assert got == expected, study.key
    assert abs(drawn[2] / len(studies) - 80 / 680) < 0.03, drawn  # binomial sd 0.008
    # Without `joint` the mix is the stage's own: one entry, the config itself.
    assert mixers[1].study_mix(studies[0]) is mixers[1].config


@pytest.mark.parametrize("joint, message", [
    ([{"stage": 3, "share": 1.0}], r"tasks.joint\[0\]: tasks.stage = 3"),
    ([{"stage": 1, "share": 0.0}], r"tasks.joint\[0\].share = 0.0"),
    ([{"stage": 2, "share": 1.0, "weights": {"nope": 1.0}}], r"tasks.joint\[0\]: tasks.weights: unknown task"),
])
def test_joint_mix_names_the_bad_entry(joint, message):
    with pytest.raises(RadllmError, match=message):
        load_config(TaskMixConfig, overrides=[f"joint={joint}"]).validate()


def test_mix_falls_back_to_applicable_tasks_and_counts_skips(tokenizer, spec):
    config = TaskMixConfig(weights={"report_generation": 5.0, "image_generation": 0.0, "vqa": 0.0, "text_lm": 1.0})
    mixer = TaskMixer(tokenizer, spec, config, seed=0)
    no_image = make_study(tokenizer, key="noimg", views=())
    nothing = make_study(tokenizer, key="nothing", views=(), report="")
    broken = make_study(tokenizer, key="broken")
    broken.image_codes[0] = np.zeros((1, 1), dtype=np.int16)
    good = make_study(tokenizer, key="good")
    out = list(mixer.examples([no_image, nothing, broken, good]))
    assert [ex.task for ex in out if ex.key == "noimg"] == ["text_lm"]
    assert "nothing" not in {ex.key for ex in out} and "broken" not in {ex.key for ex in out}
    assert mixer.counts[NO_APPLICABLE_TASK] == 1 and mixer.counts[SKIPPED_INVALID] == 1
    assert {ex.key for ex in out} == {"noimg", "good"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stage": 3}, "tasks.stage = 3"),
        ({"weights": {"report_generation": 1.0, "captioning": 1.0}}, "unknown task.*captioning"),
        ({"weights": {"report_generation": -1.0}}, "negative weight"),
        ({"weights": {"report_generation": 0.0}}, "at least one task"),
        ({"cfg_drop_prob": 1.5}, "cfg_drop_prob = 1.5"),
        ({"max_views": 0}, "max_views = 0"),
        ({"report_format": "findings_last"}, "report_format = 'findings_last'"),
        ({"impression_weight": 0.0}, "impression_weight = 0.0"),
        ({"finding_weight": -1.0}, "finding_weight = -1.0"),
        ({"findings_order": "random"}, "findings_order = 'random'"),
        ({"image_loss_weight": float("nan")}, "image_loss_weight = nan"),
        ({"word_dropout": 1.0}, "word_dropout = 1.0"),
        ({"prompt_image_weight": -0.5}, "prompt_image_weight = -0.5"),
        ({"image_condition": "findings"}, "image_condition = 'findings'"),
    ],
)
def test_config_validation(tokenizer, spec, changes, message):
    with pytest.raises(RadllmError, match=message):
        TaskMixer(tokenizer, spec, TaskMixConfig(**changes), seed=0)


def test_config_loads_from_yaml(tmp_path: Path):
    path = tmp_path / "tasks.yaml"
    path.write_text("stage: 2\nweights: {vqa: 0.5}\ncfg_drop_prob: 0.2\n")
    config = load_config(TaskMixConfig, path).validate()
    assert config.stage == 2 and config.cfg_drop_prob == 0.2
    assert config.weights == {"report_generation": 1.0, "image_generation": 1.0, "vqa": 0.5, "text_lm": 0.0}
    path.write_text("stage: 2\nweight: {vqa: 0.5}\n")
    with pytest.raises(RadllmError, match="weight"):
        load_config(TaskMixConfig, path)


def test_prompt_image_weight_makes_the_shown_codes_targets_of_reading_examples_only(tokenizer, spec):
    """Codes and <eoi> of every prompt block become targets of the configured weight; <boi>, the
    start token and the instruction stay context; the report targets keep their own weights."""
    study = make_study(tokenizer, views=("PA", "LATERAL"), report=SECTIONED, labels=empty_labels() | {"Cardiomegaly": 1})
    config = TaskMixConfig(stage=2, report_format="impression_first", impression_weight=3.0, prompt_image_weight=0.25)
    plain = replace(config, prompt_image_weight=0.0)
    for name in ("report_generation", "vqa"):
        mixer = TaskMixer(tokenizer, spec, replace(config, weights={name: 1.0, "image_generation": 0.0}), seed=0)
        (ex,) = mixer.study_examples(study)
        (reference,) = TaskMixer(tokenizer, spec, replace(plain, weights={name: 1.0, "image_generation": 0.0}), seed=0).study_examples(study)
        assert ex.input_ids == reference.input_ids
        n_prompt = prompt_len(reference)
        image_positions = [
            i for i, t in enumerate(ex.input_ids[:n_prompt]) if spec.token_offset <= t < spec.token_offset + CODEBOOK or t == spec.eoi_id
        ]
        assert len(image_positions) == 2 * (GRID[0] * GRID[1] + 1)  # two views: 6 codes + <eoi> each
        reference_weights = reference.weights or [1.0] * len(reference)
        for i, (label, weight) in enumerate(zip(ex.labels, ex.weights)):
            if i in image_positions:
                assert (label, weight) == (ex.input_ids[i], 0.25)
            elif i < n_prompt:
                assert label == IGNORE_INDEX
            else:  # the response: the same targets with the same weights as without the option
                assert (label, weight) == (reference.labels[i], reference_weights[i])
    # A dropped image (`report_drop_prob`: an empty <boi><eoi> block) has nothing to learn.
    mixer = TaskMixer(tokenizer, spec, replace(config, weights={"report_generation": 1.0, "image_generation": 0.0}, report_drop_prob=1.0), seed=0)
    (ex,) = mixer.study_examples(study)
    assert ex.input_ids.count(spec.eoi_id) == 1 and ex.labels[ex.input_ids.index(spec.eoi_id)] == IGNORE_INDEX
    # Image generation already targets its (only) image block; the option leaves it alone.
    mixer = TaskMixer(tokenizer, spec, replace(config, weights={"image_generation": 1.0, "report_generation": 0.0}, cfg_drop_prob=0.0), seed=0)
    (ex,) = mixer.study_examples(study)
    assert ex.labels[: prompt_len(ex)] == [IGNORE_INDEX] * prompt_len(ex) and ex.n_targets == GRID[0] * GRID[1] + 2


# --- real tokenizer families (built by tests/tokenizer_fixtures.py and radllm build-tokenizer) -----------


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_every_task_round_trips_through_a_real_extended_tokenizer(tmp_path_factory, family):
    from tokenizer_fixtures import make_visual_tokenizer

    from radllm.vocab import decode_report, encode_report, image_codes_from_ids, load_tokenizer

    tok, spec = load_tokenizer(make_visual_tokenizer(tmp_path_factory.mktemp(family), family=family)[0])
    start = tok.bos_token_id if family == "llama" else tok.eos_token_id  # Qwen has no bos
    text = "FINDINGS: Moderate cardiomegaly. Small left pleural effusion."
    rng = np.random.default_rng(0)
    study = TokenizedStudy(
        key="s9", study_id="s9", split="train", views=["PA"], report=text,
        image_codes=[rng.integers(0, spec.codebook_size, size=(spec.grid_height, spec.grid_width))],
        report_ids=np.asarray(encode_report(tok, text), dtype=np.int32),
        labels=empty_labels() | {"Cardiomegaly": 1},
    )
    config = TaskMixConfig(stage=2, cfg_drop_prob=0.0)
    (report_ex,) = report_generation(study, tok, spec, random.Random(0), config)
    n = prompt_len(report_ex)
    assert report_ex.input_ids[0] == start
    assert decode_report(tok, report_ex.input_ids[n:]) == text and report_ex.input_ids[-1] == tok.eos_token_id
    block = report_ex.input_ids[n - 2 - spec.tokens_per_image : n]
    np.testing.assert_array_equal(image_codes_from_ids(spec, block), study.image_codes[0])
    assert decode_report(tok, report_ex.input_ids[1 : n - 2 - spec.tokens_per_image]).strip() in {t.strip() for t in REPORT_INSTRUCTIONS}

    (image_ex,) = image_generation(study, tok, spec, random.Random(0), config)
    prompt = image_ex.input_ids[: prompt_len(image_ex)]
    assert prompt in [image_generation_prompt(text, tok, spec, 2, t) for t in range(len(IMAGE_INSTRUCTIONS))]
    np.testing.assert_array_equal(image_codes_from_ids(spec, image_ex.input_ids[len(prompt) :]), study.image_codes[0])

    (vqa_ex,) = vqa(study, tok, spec, random.Random(0), config)
    assert decode_report(tok, vqa_ex.input_ids[prompt_len(vqa_ex) :]) == "yes"
