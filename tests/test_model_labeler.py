"""A labeler from a local HF model directory: logits read as [observation, value], used on both sides of `radllm evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from radllm.cli import main
from radllm.clinical_efficacy import clinical_efficacy
from radllm.labeler.model_labeler import ModelLabeler
from radllm.labels import OBSERVATIONS, empty_labels

OBSERVED = ["Cardiomegaly", "Pleural Effusion", "Pneumothorax"]
VALUES = [None, 1, 0, -1]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "no", "small", "large", "pleural", "effusion", "heart", "enlarged", "pneumothorax", "."]


def tiny_labeler_dir(root: Path, spec: dict | None = None) -> Path:
    """A random 1-layer BERT classifier with 3 observations × 4 values and a word-level tokenizer."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        num_labels=len(OBSERVED) * len(VALUES), max_position_embeddings=64)
    config.radllm_labeler = spec if spec is not None else {"observations": OBSERVED, "values": VALUES}
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # make the heads decisive so rounding cannot flip an argmax
        model.classifier.weight.mul_(50)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


REPORTS = ["No pleural effusion.", "Small pleural effusion.", "Heart enlarged.", "Large pneumothorax.", "no"]


def test_labels_follow_the_argmax_of_each_observations_head(tmp_path):
    directory = tiny_labeler_dir(tmp_path / "labeler")
    labeler = ModelLabeler(directory, batch_size=2)  # batches of 2: padding must not change a label
    got = labeler.label_many(REPORTS)
    model = BertForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    for report, labels in zip(REPORTS, got):
        with torch.no_grad():
            logits = model(**tokenizer([report], return_tensors="pt")).logits[0]  # one report alone, no padding
        expected = empty_labels()
        for k, name in enumerate(OBSERVED):
            expected[name] = VALUES[int(logits[k * 4 : k * 4 + 4].argmax())]
        assert labels == expected, report
    assert set(got[0]) == set(OBSERVATIONS) and all(got[0][n] is None for n in OBSERVATIONS if n not in OBSERVED)
    assert labeler.identity.startswith("model:labeler:") and labeler.label(REPORTS[1]) == got[1]


def test_an_empty_report_states_nothing(tmp_path):
    labeler = ModelLabeler(tiny_labeler_dir(tmp_path / "labeler"))
    got = labeler.label_many(["", REPORTS[0], "  "])
    assert got[0] == empty_labels() and got[2] == empty_labels() and got[1] == labeler.label(REPORTS[0])


def test_evaluate_uses_the_model_labeler_on_both_sides(tmp_path):
    directory = tiny_labeler_dir(tmp_path / "labeler")
    refs = [{"study_id": f"s{i}", "report": r} for i, r in enumerate(REPORTS)]
    preds = [{"task": "report", "study_id": f"s{i}", "report": REPORTS[(i + 1) % len(REPORTS)]} for i in range(len(REPORTS))]
    (tmp_path / "ref.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    out = tmp_path / "eval"
    assert main(["evaluate", "--ref", str(tmp_path / "ref.jsonl"), "--pred", str(tmp_path / "pred.jsonl"), "--out", str(out),
                 "--no-meteor", "--bootstrap", "0", "--labeler", str(directory)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    labeler = ModelLabeler(directory)
    expected = clinical_efficacy(labeler.label_many([p["report"] for p in preds]), labeler.label_many(REPORTS), "positive")
    assert metrics["eval/labeler"] == labeler.identity
    for key in ("ce_f1_micro_14", "ce_precision_micro_14", "ce_recall_micro_14"):
        assert metrics[f"report/{key}"] == pytest.approx(expected[key]), key


@pytest.mark.parametrize("spec, message", [
    ({"observations": ["Cardiomegaly", "Heart Size"], "values": VALUES}, r"observations \['Heart Size'\] must be distinct names"),
    ({"observations": OBSERVED, "values": [None, 1, 0, 2]}, r"values .* must be distinct labels"),
    ({"observations": OBSERVED[:2], "values": VALUES}, r"the model has 12 outputs, expected 2 × 4"),
    ("not a mapping", r"radllm_labeler: expected"),
])
def test_a_model_without_a_readable_layout_is_a_clear_error(tmp_path, capsys, spec, message):
    directory = tiny_labeler_dir(tmp_path / "labeler", spec)
    (tmp_path / "ref.jsonl").write_text(json.dumps({"study_id": "a", "report": "no"}) + "\n")
    (tmp_path / "pred.jsonl").write_text(json.dumps({"task": "report", "study_id": "a", "report": "no"}) + "\n")
    assert main(["evaluate", "--ref", str(tmp_path / "ref.jsonl"), "--pred", str(tmp_path / "pred.jsonl"), "--out", str(tmp_path / "o"),
                 "--no-meteor", "--labeler", str(directory)]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_label_command_with_a_model_labeler(tmp_path):
    directory = tiny_labeler_dir(tmp_path / "labeler")
    reports = tmp_path / "reports.txt"
    reports.write_text("\n".join(REPORTS) + "\n")
    out = tmp_path / "labels.jsonl"
    assert main(["label", str(reports), "--out", str(out), "--labeler", str(directory), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["labels"] for r in rows] == ModelLabeler(directory).label_many(REPORTS)
