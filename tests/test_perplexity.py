"""Held-out report perplexity: packed batches against a naive one-report-at-a-time loop."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_fixtures import make_model_dir
from tokenizer_fixtures import CORPUS
from transformers import AutoModelForCausalLM

from radllm.cli import main
from radllm.data.sample import TokenizedStudy
from radllm.data.shards import write_split_shards
from radllm.errors import RadllmError
from radllm.evaluation.perplexity import report_perplexity
from radllm.vocab import encode_report
from radllm.vocab.load import load_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppl")
    model_dir, _ = make_model_dir(root)
    tokenizer, spec = load_tokenizer(model_dir)
    rng = np.random.default_rng(0)
    texts = [*CORPUS, " ".join(CORPUS[:4]), ""]  # one long report, one empty (no targets)
    studies = [
        TokenizedStudy(
            key=f"s{i}", study_id=f"s{i}", split="test",
            image_codes=[rng.integers(0, spec.codebook_size, (spec.grid_height, spec.grid_width)).astype(np.int16)],
            views=["PA"], report=text, report_ids=np.asarray(encode_report(tokenizer, text), dtype=np.int32),
        )
        for i, text in enumerate(texts)
    ]
    write_split_shards(root / "shards", {"test": [studies[:5], studies[5:]]}, spec)
    return root, model_dir, tokenizer, studies


def naive_nll(model_dir, tokenizer, studies) -> tuple[float, int]:
    """One forward pass per report, plain HF model, float64 sum of per-token NLL."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    for study in studies:
        if not len(study.report_ids):
            continue
        ids = torch.tensor([[tokenizer.bos_token_id, *study.report_ids.tolist(), tokenizer.eos_token_id]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].double()
        total += float(F.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    return total, count


def test_packed_perplexity_equals_naive_loop(setup) -> None:
    root, model_dir, tokenizer, studies = setup
    total, count = naive_nll(model_dir, tokenizer, studies)
    longest = max(len(s.report_ids) for s in studies) + 2
    # rows shorter than the longest report (raised to fit it), several reports per row, 2 rows per pass
    result = report_perplexity(model_dir, root / "shards", "test", device="cpu", tokens_per_row=40, rows_per_batch=2, progress=False)
    assert longest > 40
    assert result.n_tokens == count and result.n_studies == len(studies) - 1
    assert result.nll == pytest.approx(total / count, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    assert result.perplexity > 5  # a random model is far from perfect: the test compares real numbers
    row_per_pass = report_perplexity(model_dir, root / "shards", "test", device="cpu", tokens_per_row=1, rows_per_batch=1, progress=False)
    assert row_per_pass.nll == pytest.approx(result.nll, rel=1e-5)


def test_cli_writes_json(setup, capsys) -> None:
    root, model_dir, *_ = setup
    out = root / "ppl.json"
    assert main(["perplexity", "--model", str(model_dir), "--shards", str(root / "shards"), "--out", str(out), "--no-progress"]) == 0
    saved = json.loads(out.read_text())
    assert set(saved) == {"model", "shards", "split", "n_studies", "n_tokens", "nll", "perplexity"}
    assert saved["perplexity"] == pytest.approx(math.exp(saved["nll"]))
    assert "perplexity" in capsys.readouterr().out


def test_shards_of_another_vocabulary_and_bad_split_are_errors(setup, tmp_path) -> None:
    root, model_dir, tokenizer, studies = setup
    _, spec = load_tokenizer(model_dir)
    write_split_shards(tmp_path / "other", {"test": [studies]}, dataclasses.replace(spec, vq_hash="0" * 64))
    with pytest.raises(RadllmError, match="vq_hash"):
        report_perplexity(model_dir, tmp_path / "other", "test", device="cpu", progress=False)
    assert main(["perplexity", "--model", str(model_dir), "--shards", str(root / "shards"), "--split", "val", "--out", str(tmp_path / "x.json")]) == 2
