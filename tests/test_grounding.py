"""The grounding diagnostic (radllm.training.grounding): own- vs shuffled-input examples differ only
in the image (the report), statistics against hand-computed values, a model that cannot see which
image it is shown scores no gain at chance, and a model trained on an image-determined toy task
scores a large gain for every study. The 2-rank ZeRO-3 trainer run is in test_training_zero3.py."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from tokenizer_fixtures import make_visual_tokenizer
from training_fixtures import REPO
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.config import load_config
from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.generation.shuffle import derangement
from radllm.labels import empty_labels
from radllm.modeling.packed_nll import PackedScoring
from radllm.packing import collate_padded
from radllm.tasks import IGNORE_INDEX, TaskMixConfig, image_block
from radllm.training.config import TrainConfig
from radllm.training.grounding import TIE_NATS, grounding_stats, measure_grounding, probe_examples
from radllm.vocab import encode_report, load_tokenizer

WORDS = ("heart", "lungs", "effusion", "pneumothorax", "cardiomegaly", "nodule", "opacity", "fracture",
         "carina", "stomach", "mediastinum", "consolidation", "atelectasis", "pneumonia", "rib", "tube")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    tok_dir, _ = make_visual_tokenizer(tmp_path_factory.mktemp("vocab"), codebook_size=16, image_size=16)  # 4x4 code grids
    return load_tokenizer(tok_dir)


def make_study(index: int, codes: np.ndarray, report: str, tokenizer, labels: dict | None = None) -> TokenizedStudy:
    """A one-view (PA) study with the given codes, report and labels (the rest blank)."""
    return TokenizedStudy(
        key=f"s{index:03d}", study_id=f"study-{index}", split="val", image_codes=[codes.astype(np.int16)], views=["PA"],
        report=report, report_ids=np.asarray(encode_report(tokenizer, report), dtype=np.int32), labels={**empty_labels(), **(labels or {})},
    )


def random_studies(n: int, tokenizer, spec, seed: int = 0) -> list[TokenizedStudy]:
    rng = np.random.default_rng(seed)
    studies = []
    for i in range(n):
        codes = rng.integers(0, spec.codebook_size, size=(spec.grid_height, spec.grid_width))
        report = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 8))))
        studies.append(make_study(i, codes, report, tokenizer, {"Cardiomegaly": int(rng.integers(0, 2)), "Edema": 0}))
    return studies


def tiny_llama(vocab_size: int, seed: int = 0, hidden: int = 32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


SCORING = PackedScoring("sdpa", tokens_per_row=96, rows_per_batch=3)


def test_shuffled_examples_keep_draws_and_targets_and_swap_only_the_input(vocab):
    tokenizer, spec = vocab
    studies = random_studies(6, tokenizer, spec)
    # Training-time noise is switched off for scoring: every image example is conditional, no word is dropped.
    tasks = TaskMixConfig(stage=2, weights={"report_generation": 1.0, "image_generation": 1.0, "vqa": 1.0, "text_lm": 1.0},
                          cfg_drop_prob=1.0, word_dropout=0.5, vqa_questions_per_study=2)
    probes = probe_examples(studies, tokenizer, spec, tasks, seed=7)
    donors = derangement(len(studies), 7)
    assert all(donors[i] != i for i in range(len(studies)))
    assert {p.task for p in probes} == {"report_generation", "image_generation", "vqa"}  # text_lm has no image
    for task in ("report_generation", "image_generation", "vqa"):
        for index, study in enumerate(studies):
            own = [p.example for p in probes if p.task == task and p.study == index and not p.shuffled]
            shuffled = [p.example for p in probes if p.task == task and p.study == index and p.shuffled]
            assert len(own) == len(shuffled) == (2 if task == "vqa" else 1)
            donor = studies[donors[index]]
            for a, b in zip(own, shuffled):
                assert targets(a) == targets(b) and a.key == b.key == study.key
                if task == "image_generation":
                    # The prompt holds the donor's report (conditional despite cfg_drop_prob = 1); the target is the study's own image.
                    assert targets(a) == image_block(study.image_codes[0], spec)
                    assert _contains(b.input_ids, donor.report_ids.tolist()) and _contains(a.input_ids, study.report_ids.tolist())
                    continue
                own_block, donor_block = image_block(study.image_codes[0], spec), image_block(donor.image_codes[0], spec)
                start = a.input_ids.index(spec.boi_id)
                assert a.input_ids[start : start + len(own_block)] == own_block
                assert b.input_ids == a.input_ids[:start] + donor_block + a.input_ids[start + len(own_block) :]  # same question/instruction
                if task == "report_generation":  # no word dropout: the teacher-forced inputs are the report itself
                    assert a.input_ids[-len(targets(a)) :] == targets(a)


def targets(example) -> list[int]:
    return [label for label in example.labels if label != IGNORE_INDEX]


def _contains(ids: list[int], part: list[int]) -> bool:
    return any(ids[i : i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def test_grounding_stats_hand_computed():
    own = torch.tensor([1.0, 2.0, 3.0, 4.0])
    shuffled = torch.tensor([2.0, 2.0 + TIE_NATS / 2, 1.0, 7.0])  # better, tie, worse, better
    stats = grounding_stats(own, shuffled, n_targets=20)
    assert stats.n_studies == 4 and stats.n_targets == 20
    assert stats.nll_own == pytest.approx(2.5) and stats.nll_shuffled == pytest.approx((12.0 + TIE_NATS / 2) / 4)
    assert stats.nll_own_per_token == pytest.approx(10 / 20) and stats.nll_shuffled_per_token == pytest.approx((12 + TIE_NATS / 2) / 20)
    assert stats.gain_nats == pytest.approx((1.0 + TIE_NATS / 2 - 2.0 + 3.0) / 4)
    assert stats.frac_better == pytest.approx((2 + 0.5) / 4)
    with pytest.raises(ValueError):
        grounding_stats(torch.zeros(0), torch.zeros(0), 0)


def test_a_model_that_cannot_tell_images_apart_gains_nothing(vocab):
    tokenizer, spec = vocab
    studies = random_studies(12, tokenizer, spec, seed=1)
    tasks = TaskMixConfig(stage=2, weights={"report_generation": 1.0, "image_generation": 0.0, "vqa": 1.0, "text_lm": 0.0})
    model = tiny_llama(spec.vocab_size)
    reading = measure_grounding(model, studies, tokenizer, spec, tasks, 0, SCORING)
    assert all(abs(s.gain_nats) > 1e-3 for s in reading.values())  # random weights do react to the image
    with torch.no_grad():  # every image token gets the same embedding: the image no longer reaches the model
        rows = model.get_input_embeddings().weight
        rows[spec.token_offset : spec.token_offset + spec.codebook_size] = rows[spec.token_offset].clone()
    blind = measure_grounding(model, studies, tokenizer, spec, tasks, 0, SCORING)
    assert sorted(blind) == ["report_generation", "vqa"]
    for name, stats in blind.items():
        assert stats.n_studies == 12 and stats.nll_own > 1.0, name
        assert stats.gain_nats == pytest.approx(0.0, abs=1e-5) and stats.frac_better == 0.5, name
        assert stats.nll_shuffled == pytest.approx(stats.nll_own, abs=1e-5), name


def train_toy(studies: list[TokenizedStudy], tokenizer, spec, tasks: TaskMixConfig, steps: int) -> LlamaForCausalLM:
    """A tiny Llama trained on the studies' own examples (both directions) until it knows which image goes with which report."""
    model = tiny_llama(spec.vocab_size, seed=1, hidden=48).train()
    examples = [p.example for p in probe_examples(studies, tokenizer, spec, tasks, 0) if not p.shuffled]
    batch = collate_padded(examples, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    torch.manual_seed(0)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval()


def test_a_model_trained_on_an_image_determined_task_reads_every_image(vocab):
    tokenizer, spec = vocab
    # Study i: every code of its image is i, its report is word i. Only the image says which word, and only the report which image.
    studies = [make_study(i, np.full((spec.grid_height, spec.grid_width), i), WORDS[i], tokenizer) for i in range(spec.codebook_size)]
    tasks = TaskMixConfig(stage=1, weights={"report_generation": 1.0, "image_generation": 1.0, "vqa": 0.0, "text_lm": 0.0})
    untrained = measure_grounding(tiny_llama(spec.vocab_size, seed=1, hidden=48), studies, tokenizer, spec, tasks, 0, SCORING)
    model = train_toy(studies, tokenizer, spec, tasks, steps=40)
    stats = measure_grounding(model, studies, tokenizer, spec, tasks, 0, SCORING)
    assert sorted(stats) == ["image_generation", "report_generation"]
    for name, value in stats.items():
        assert value.n_studies == 16, name
        assert value.frac_better == 1.0, name  # every donor shows another code (another word)
        assert value.gain_nats > 2.0 and value.gain_nats > 10 * abs(untrained[name].gain_nats), name
        assert value.nll_own < 0.5 * untrained[name].nll_own, name
        assert value.gain_nats == pytest.approx(value.nll_shuffled - value.nll_own)


def test_too_few_studies_fail_clearly(vocab):
    tokenizer, spec = vocab
    with pytest.raises(RadllmError, match="at least 2 studies"):
        probe_examples(random_studies(1, tokenizer, spec), tokenizer, spec, TaskMixConfig(), 0)


@pytest.mark.parametrize("override, message", [
    ("logging.grounding_studies=1", "logging.grounding_studies = 1; expected 0 (off) or at least 2"),
    ("logging.grounding_studies=-3", "logging.grounding_studies = -3; expected a value >= 0"),
])
def test_grounding_option_is_validated(override, message):
    config = load_config(TrainConfig, REPO / "configs" / "train" / "tiny_stage1.yaml", [override])
    with pytest.raises(RadllmError, match=re.escape(message)):
        config.validate()
    assert load_config(TrainConfig, REPO / "configs" / "train" / "tiny_stage1.yaml", ["logging.grounding_studies=0"]).validate()


def test_studies_with_other_view_counts_are_compared_on_the_same_targets(vocab):
    tokenizer, spec = vocab
    two_views = [replace(s, image_codes=[s.image_codes[0]] * 2, views=["PA", "LATERAL"]) for s in random_studies(3, tokenizer, spec)]
    studies = random_studies(3, tokenizer, spec, seed=5) + two_views
    tasks = TaskMixConfig(stage=1, weights={"report_generation": 1.0, "image_generation": 0.0, "vqa": 0.0, "text_lm": 0.0})
    stats = measure_grounding(tiny_llama(spec.vocab_size), studies, tokenizer, spec, tasks, 3, SCORING)
    own_targets = sum(len(s.report_ids) + 1 for s in studies)  # report tokens + eos
    assert stats["report_generation"].n_studies == 6 and stats["report_generation"].n_targets == own_targets
