"""Generated-report samples of the trainer (radllm.training.samples) against `radllm generate reports`.

The reference is the whole generation path run independently: the CLI loads the exported model
directory from disk and reads the shards itself. The 2-rank ZeRO-3 case is checked on the shared
launcher run in tests/test_training_zero3.py.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from training_fixtures import make_training_artifacts, write_train_config
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from radllm.cli import main as cli_main
from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.generation.inputs import shard_inputs
from radllm.training.config import TrainConfig
from radllm.training.export import export_config, write_hf_model
from radllm.training.model import add_visual_rows, load_model_config
from radllm.training.samples import sample_reports, sample_scores, sample_studies, samples_path, samples_table, write_samples
from radllm.vocab import load_tokenizer

N_SAMPLES, MAX_NEW = 3, 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A stage-1 config with samples on, and an exported model (the pretrained LM with visual rows added)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("samples")
    art = make_training_artifacts(root, n_studies=40)
    path = write_train_config(root / "run.yaml", art, root / "run", logging={"sample_reports": N_SAMPLES, "sample_max_new_tokens": MAX_NEW})
    config = load_config(TrainConfig, path)
    tokenizer, spec = load_tokenizer(config.tokenizer)
    model = LlamaForCausalLM.from_pretrained(art.pretrained, dtype=torch.float32)
    add_visual_rows(model, spec.vocab_size, config.model.new_row_noise, config.seed)
    model_config = export_config(load_model_config(config.model), tokenizer, spec, config.tasks.image_condition, torch.float32)
    export = write_hf_model(model.state_dict(), model_config, config.tokenizer, root / "model")
    return config, tokenizer, spec, export, path


def generate_cli(config: TrainConfig, model_dir, out) -> dict[str, str]:
    code = cli_main([
        "generate", "reports", "--model", str(model_dir), "--input", config.data.shards, "--split", config.data.eval_split,
        "--out", str(out), "--stage", str(config.tasks.stage), "--max-views", str(config.tasks.max_views),
        "--max-new-tokens", str(MAX_NEW), "--device", "cpu", "--no-progress",
    ])
    assert code == 0
    return {r["study_id"]: r["report"] for r in map(json.loads, out.read_text().splitlines())}


@pytest.mark.parametrize("stage", [1, 2])
def test_samples_are_the_first_eval_studies_and_equal_radllm_generate(setup, tmp_path, stage):
    _, tokenizer, spec, export, path = setup
    config = load_config(TrainConfig, path, [f"tasks.stage={stage}"])  # stage 2 adds the instruction to the prompt
    studies = sample_studies(config.data.shards, config.data.eval_split, config.logging.sample_reports, spec)
    every = shard_inputs(config.data.shards, spec, config.data.eval_split)
    assert len(every) > N_SAMPLES and [s.study_id for s in studies] == [s.study_id for s in every[:N_SAMPLES]]
    expected = generate_cli(config, export, tmp_path / "reports.jsonl")
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    for rule in (None, lambda done: done):  # rows leave the batch / rows kept until the (one-rank) rule agrees
        records = sample_reports(
            model, tokenizer, spec, studies, stage=config.tasks.stage, max_views=config.tasks.max_views,
            max_new_tokens=config.logging.sample_max_new_tokens, stop_together=rule,
        )
        assert [r["study_id"] for r in records] == [s.study_id for s in studies]
        assert {r["study_id"]: r["report"] for r in records} == {k: expected[k] for k in (s.study_id for s in studies)}
        assert [r["reference"] for r in records] == [s.report for s in studies] and all(r["reference"] for r in records)
        assert any(r["report"] for r in records)
        assert records[0]["decoding"] == {"strategy": "greedy", "max_new_tokens": MAX_NEW, "min_new_tokens": 0}


def test_samples_file_and_markdown_table(tmp_path):
    records = [{"study_id": "s|1", "reference": "FINDINGS: clear.\nIMPRESSION: normal | fine", "report": ""}, {"study_id": "s2", "reference": "x", "report": "y  z"}]
    path = write_samples(tmp_path, 7, records)
    assert path == samples_path(tmp_path, 7) == tmp_path / "samples" / "step_0000007.jsonl"
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"step": 7, **r} for r in records]
    assert samples_table(records).splitlines() == [
        "| study | reference report | generated report |",
        "|---|---|---|",
        "| s\\|1 | FINDINGS: clear. IMPRESSION: normal \\| fine |   |",
        "| s2 | x | y z |",
    ]


@pytest.mark.parametrize("override, message", [
    ("logging.sample_reports=-1", "logging.sample_reports = -1; expected a value >= 0"),
    ("logging.sample_max_new_tokens=0", "logging.sample_max_new_tokens = 0; expected a positive integer"),
    ("data.eval_split=null", "logging.sample_reports = 3 needs data.eval_split"),
])
def test_sample_options_are_validated(setup, override, message):
    with pytest.raises(RadllmError, match=re.escape(message)):
        load_config(TrainConfig, setup[4], [override]).validate()


def test_sample_scores_count_the_findings_the_labeler_reads_on_both_sides():
    records = [
        # reference: effusion + pneumothorax; generated: effusion (tp) and cardiomegaly (fp), pneumothorax missed (fn)
        {"reference": "There is a small right pleural effusion. A moderate left pneumothorax is present.",
         "report": "There is a small right pleural effusion. The heart is enlarged."},
        # reference: pneumothorax; generated: the same (tp)
        {"reference": "A small left pneumothorax is present.", "report": "Small left pneumothorax."},
        # reference: normal ("No Finding" positive); generated: normal (tp)
        {"reference": "The lungs are clear. No acute cardiopulmonary process.", "report": "No acute cardiopulmonary process."},
    ]
    scores = sample_scores(records)
    # "present" = observations some reference states: cardiomegaly is not one, so its false positive is not counted
    tp, fp, fn = 3, 0, 1
    assert scores["f1_micro_present"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert scores["precision_micro_present"] == pytest.approx(tp / (tp + fp))
    assert scores["recall_micro_present"] == pytest.approx(tp / (tp + fn))
    # present observations: effusion (F1 1), pneumothorax (tp 1, fn 1: F1 2/3), no finding (F1 1)
    assert scores["f1_macro_present"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    # coherence: no sample has two sections, contradicts or repeats itself
    assert (scores["contradiction_rate"], scores["repeat_rate"]) == (0.0, 0.0) and "side_consistency" not in scores
    faulty = records + [{"reference": "Small left pneumothorax.", "report": "FINDINGS: No pneumothorax. No pneumothorax. "
                                                                           "Small left effusion. IMPRESSION: Small right effusion."}]
    scores = sample_scores(faulty)  # the fourth contradicts nothing (sides differ), repeats a sentence and swaps the side
    assert (scores["contradiction_rate"], scores["repeat_rate"], scores["side_consistency"]) == (0.0, 0.25, 0.0)
