"""`radllm evaluate --scorer chexbert,radgraph,bertscore` on tiny random weights in the official layouts, offline.

    DS_ACCELERATOR=cpu .venv/bin/python -m pytest tests/test_scorers.py -q

The weights are written by the tests as the libraries and checkpoints lay them out: CheXbert's
``chexbert.pth`` (a ``model_state_dict`` of ``module.bert.*`` and ``module.linear_heads.*``) with a
bert-base-uncased config and vocabulary, RadGraph's ``radgraph.tar.gz`` (config.json, vocabulary/,
weights.th) with the backbone its config names, distilroberta-base as a Hugging Face model
directory; once under a ``--scorer-weights`` directory and once in a Hugging Face cache.
Heads are set by hand so that the expected numbers can be worked out on paper.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tarfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: no test touches the network

import pytest
import torch

from radllm.cli import main
from radllm.errors import RadllmError
from radllm.evaluation import scorers
from radllm.evaluation.scorers import BERTSCORE_LAYER, SCORERS, check_scorers, parse_scorers, standard_scores
from radllm.vocab_spec import sha256_file

WORDS = ["no", "acute", "cardiopulmonary", "process", "heart", "size", "is", "normal", "enlarged", "mild", "cardiomegaly",
         "small", "left", "pleural", "effusion", "the", "lungs", "are", "clear", ".", ","]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BACKBONE = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"  # a hub id, as radgraph's archive names it
REPORTS = ["No acute cardiopulmonary process.", "Mild cardiomegaly. Small left pleural effusion.", "The lungs are clear.", ""]
OTHERS = ["The lungs are clear.", "Heart size is normal.", "No acute cardiopulmonary process.", "Small left pleural effusion."]
# CheXbert head -> class: Cardiomegaly positive, Edema uncertain, Pleural Effusion negative, No Finding positive
HEAD_CLASS = {1: 1, 4: 3, 9: 2, 13: 1}


def tiny_bert_files(directory: Path, layers: int = 2) -> None:
    """A bert-base-uncased-like config.json + vocab.txt (letters and digits too, as a real vocabulary has)."""
    from transformers import BertConfig, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = BERT_SPECIALS + list("abcdefghijklmnopqrstuvwxyz0123456789") + sorted(set(WORDS) - set("abcdefghijklmnopqrstuvwxyz"))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(directory / "vocab.txt"), do_lower_case=True, model_max_length=512).save_pretrained(directory)
    BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32,
               max_position_embeddings=512).save_pretrained(directory)


def chexbert_checkpoint(path: Path, bert_dir: Path, head_class: dict[int, int] | None) -> None:
    """chexbert.pth as CheXbert's training saves it; heads pick `head_class` (others blank), or random when None."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig.from_pretrained(bert_dir))
    state = {f"module.bert.{key}": value for key, value in bert.state_dict().items()}
    for head in range(14):
        classes = 4 if head < 13 else 2
        weight, bias = torch.randn(classes, 16) * 50, torch.zeros(classes)
        if head_class is not None:
            weight.zero_()
            bias[head_class.get(head, 0)] = 10.0
        state[f"module.linear_heads.{head}.weight"], state[f"module.linear_heads.{head}.bias"] = weight, bias
    torch.save({"epoch": 3, "model_state_dict": state}, path)


def radgraph_archive(path: Path, backbone_dir: Path) -> None:
    """radgraph.tar.gz: DyGIE config naming BACKBONE, vocabulary/, weights.th of radgraph's own model classes.

    Every span of up to 2 words is an ANAT-DP entity and no relation is predicted, so a report
    pair's F1 is the overlap of their 1- and 2-word spans at all three levels.
    """
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models.dygie import DyGIE

    bert = {"type": "pretrained_transformer_mismatched", "model_name": BACKBONE, "max_length": 512}
    config = {
        "dataset_reader": {"type": "dygie", "token_indexers": {"bert": bert}, "max_span_width": 2},
        "model": {
            "type": "dygie", "embedder": {"token_embedders": {"bert": bert}}, "initializer": {}, "module_initializer": {},
            "feature_size": 4, "max_span_width": 2, "target_task": "relation",
            "feedforward_params": {"num_layers": 1, "hidden_dims": 8, "dropout": 0.0},
            "loss_weights": {"ner": 0.2, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "modules": {"coref": {"spans_per_word": 0.3, "max_antecedents": 100, "coref_prop": 0}, "ner": {},
                        "relation": {"spans_per_word": 0.5},
                        "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                                   "loss_weights": {"trigger": 1.0, "arguments": 1.0}}},
        },
    }
    staging = path.parent / "radgraph-staging"
    (staging / "vocabulary").mkdir(parents=True)
    (staging / "config.json").write_text(json.dumps(config))
    (staging / "vocabulary" / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    (staging / "vocabulary" / "radgraph__ner_labels.txt").write_text("\nANAT-DP\nOBS-DP\nOBS-U\nOBS-DA\n")
    (staging / "vocabulary" / "radgraph__relation_labels.txt").write_text("suggestive_of\nlocated_at\nmodify\n")
    with scorers._radgraph_tokenizers():
        embedder = text_field_embedders.BasicTextFieldEmbedder(
            {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(backbone_dir), max_length=512)})
    params = {k: v for k, v in config["model"].items() if k not in ("type", "embedder", "initializer", "module_initializer")}
    torch.manual_seed(0)
    model = DyGIE(vocab=Vocabulary.from_files(str(staging / "vocabulary")), embedder=embedder, **params)
    state = model.state_dict()
    ner, relation = "_ner._ner_scorers.radgraph__ner_labels.1._module", "_relation._relation_scorers.radgraph__relation_labels"
    state[f"{ner}.weight"].zero_()
    state[f"{ner}.bias"].copy_(torch.tensor([10.0, -10.0, -10.0, -10.0]))  # ANAT-DP over the null class (score 0)
    state[f"{relation}.weight"].zero_()
    state[f"{relation}.bias"].fill_(-10.0)  # every relation label under the null class
    torch.save(state, staging / "weights.th")
    with tarfile.open(path, "w:gz") as tar:
        for item in ("config.json", "vocabulary", "weights.th"):
            tar.add(staging / item, arcname=item)


def tiny_distilroberta(directory: Path) -> None:
    """A 6-layer RoBERTa with a byte-level BPE vocabulary without merges (one token per character)."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbols = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]  # GPT-2's byte -> unicode map
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + symbols + ["<mask>"])}
    directory.mkdir(parents=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    RobertaTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=512).save_pretrained(directory)
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32,
                               max_position_embeddings=514, pad_token_id=1)).save_pretrained(directory)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """The ``--scorer-weights`` layout: chexbert.pth, bert-base-uncased/, radgraph.tar.gz, <backbone id>/, distilroberta-base/."""
    pytest.importorskip("radgraph", reason=f"the scorers extra: {scorers.EXTRA}")
    pytest.importorskip("bert_score", reason=f"the scorers extra: {scorers.EXTRA}")
    root = tmp_path_factory.mktemp("scorer_weights")
    tiny_bert_files(root / "bert-base-uncased")
    chexbert_checkpoint(root / "chexbert.pth", root / "bert-base-uncased", HEAD_CLASS)
    tiny_bert_files(root / BACKBONE, layers=1)
    radgraph_archive(root / "radgraph.tar.gz", root / BACKBONE)
    tiny_distilroberta(root / "distilroberta-base")
    return root


@pytest.fixture
def offline_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hugging Face cache as HF_HUB_CACHE, offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # huggingface_hub read the variable at import
    assert constants.HF_HUB_OFFLINE
    return cache


def put_in_cache(cache: Path, repo: str, source: Path) -> None:
    """`source` (a file, or the files of a directory) as the cached snapshot of `repo` at main."""
    commit = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in [source] if source.is_file() else sorted(source.iterdir()):
        (snapshot / path.name).write_bytes(path.read_bytes())


def test_scorer_names_parse_and_unknown_ones_are_refused() -> None:
    assert SCORERS == ("chexbert", "radgraph", "bertscore")
    assert parse_scorers(" bertscore,chexbert ,bertscore") == ("bertscore", "chexbert")
    with pytest.raises(RadllmError, match=r"unknown scorer\(s\) \['rouge'\].*'chexbert', 'radgraph', 'bertscore'"):
        parse_scorers("chexbert,rouge")
    with pytest.raises(RadllmError, match="unknown"):
        standard_scores(["bleu"], ["a"], ["a"], None, "cpu")


def test_cli_writes_every_key_finite_with_the_weight_hashes(weights_dir, tmp_path) -> None:
    ref, pred = tmp_path / "ref.jsonl", tmp_path / "pred.jsonl"
    ref.write_text("".join(json.dumps({"study_id": f"s{i}", "report": text}) + "\n" for i, text in enumerate(REPORTS)))
    pred.write_text("".join(json.dumps({"task": "report", "study_id": f"s{i}", "report": text}) + "\n" for i, text in enumerate(OTHERS)))
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--no-meteor", "--bootstrap", "0",
                 "--scorer", "chexbert,radgraph,bertscore", "--scorer-weights", str(weights_dir)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scores = [f"chexbert_f1_{a}_{n}_uncertain_{p}" for a in ("micro", "macro") for n in ("14", "5") for p in ("positive", "negative")]
    scores += ["radgraph_f1", "radgraph_f1_simple", "radgraph_f1_complete", "bertscore_f1"]
    for key in scores:
        value = metrics[f"report/{key}"]
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)
    assert math.isfinite(metrics["report/bertscore_f1_rescaled"]) and metrics["report/bertscore_f1_rescaled"] <= 1.0  # may be negative
    assert metrics["report/scorer/chexbert/weights_sha256"] == sha256_file(weights_dir / "chexbert.pth")
    assert metrics["report/scorer/bertscore/weights_sha256"] == sha256_file(weights_dir / "distilroberta-base" / "model.safetensors")
    with tarfile.open(weights_dir / "radgraph.tar.gz") as tar:
        inside = tar.extractfile("weights.th").read()
    assert metrics["report/scorer/radgraph/weights_sha256"] == hashlib.sha256(inside).hexdigest()
    assert metrics["report/scorer/radgraph"].startswith("radgraph 0.1.") and BACKBONE in metrics["report/scorer/radgraph"]
    assert metrics["report/scorer/bertscore"].startswith("bert-score 0.3.")
    assert "distilroberta-base, layer 5" in metrics["report/scorer/bertscore"]
    assert "chexbert.pth" in metrics["report/scorer/chexbert"]


def test_identical_reports_score_one_and_chexbert_heads_map_to_labels(weights_dir) -> None:
    found = standard_scores(SCORERS, REPORTS, REPORTS, str(weights_dir), "cpu")
    # An empty report scores 0 in both libraries (bert-score's rule; no entity in radgraph), the other three 1.
    assert found["bertscore_f1"] == pytest.approx(3 / 4, abs=1e-5)
    baseline = float(_baseline_row(BERTSCORE_LAYER)["F"])  # bert-score's own file for distilroberta-base
    assert found["bertscore_f1_rescaled"] == pytest.approx((3 / 4 - baseline) / (1 - baseline), abs=1e-4)
    assert found["radgraph_f1"] == found["radgraph_f1_simple"] == found["radgraph_f1_complete"] == pytest.approx(3 / 4)
    # Every report reads Cardiomegaly +, Edema ?, Pleural Effusion -, No Finding +, the rest blank.
    # Uncertain positive: 3 observations have positives (F1 1), 11 have none (F1 0); of the five, Cardiomegaly and Edema.
    assert found["chexbert_f1_micro_14_uncertain_positive"] == 1.0 and found["chexbert_f1_micro_5_uncertain_positive"] == 1.0
    assert found["chexbert_f1_macro_14_uncertain_positive"] == pytest.approx(3 / 14)
    assert found["chexbert_f1_macro_5_uncertain_positive"] == pytest.approx(2 / 5)
    # Uncertain negative: Edema drops out.
    assert found["chexbert_f1_macro_14_uncertain_negative"] == pytest.approx(2 / 14)
    assert found["chexbert_f1_macro_5_uncertain_negative"] == pytest.approx(1 / 5)
    assert found["chexbert_f1_micro_5_uncertain_negative"] == 1.0


def _baseline_row(layer: int) -> dict[str, str]:
    import csv

    import bert_score

    path = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / "distilroberta-base.tsv"
    with path.open() as fh:
        return next(row for row in csv.DictReader(fh) if row["LAYER"] == str(layer))


def test_radgraph_f1_is_the_overlap_of_entities(weights_dir) -> None:
    # Entities are the 1- and 2-word spans: {heart, normal, heart normal} vs {heart, enlarged, heart enlarged}: P = R = 1/3.
    found = standard_scores(["radgraph"], ["heart normal", "heart normal"], ["heart enlarged", "heart normal"], str(weights_dir), "cpu")
    assert found["radgraph_f1"] == pytest.approx((1 / 3 + 1) / 2)
    assert found["radgraph_f1_simple"] == found["radgraph_f1_complete"] == pytest.approx((1 / 3 + 1) / 2)
    assert standard_scores(["bertscore"], ["heart normal"], ["heart enlarged"], str(weights_dir), "cpu")["bertscore_f1"] < 1.0


def test_radgraph_reads_an_archive_extracted_beforehand(weights_dir, tmp_path) -> None:
    """DIR/radgraph/ (the archive unpacked once) instead of DIR/radgraph.tar.gz: same model, same hash."""
    with tarfile.open(weights_dir / "radgraph.tar.gz") as tar:
        tar.extractall(tmp_path / "radgraph", filter="data")
    (tmp_path / BACKBONE).parent.mkdir(parents=True)
    (tmp_path / BACKBONE).symlink_to(weights_dir / BACKBONE)
    check_scorers(["radgraph"], str(tmp_path))
    pairs = (["heart normal", "heart normal"], ["heart enlarged", "heart normal"])
    assert standard_scores(["radgraph"], *pairs, str(tmp_path), "cpu") == standard_scores(["radgraph"], *pairs, str(weights_dir), "cpu")


def test_chexbert_labels_do_not_depend_on_batching(weights_dir, tmp_path) -> None:
    checkpoint = tmp_path / "chexbert.pth"
    chexbert_checkpoint(checkpoint, weights_dir / "bert-base-uncased", None)  # random heads: labels depend on the text
    labeler = scorers.CheXbertLabeler(checkpoint, weights_dir / "bert-base-uncased", batch_size=3)
    together = labeler.label_many(REPORTS + OTHERS)
    assert together == [labeler.label(text) for text in REPORTS + OTHERS]  # padding changes nothing
    assert all(value in (None, 1, 0, -1) for labels in together for value in labels.values())


def test_hugging_face_cache_gives_the_same_scores(weights_dir, offline_cache) -> None:
    put_in_cache(offline_cache, "StanfordAIMI/RRG_scorers", weights_dir / "chexbert.pth")
    put_in_cache(offline_cache, "StanfordAIMI/RRG_scorers", weights_dir / "radgraph.tar.gz")
    put_in_cache(offline_cache, "google-bert/bert-base-uncased", weights_dir / "bert-base-uncased")
    put_in_cache(offline_cache, BACKBONE, weights_dir / BACKBONE)
    put_in_cache(offline_cache, "distilroberta-base", weights_dir / "distilroberta-base")  # an older cache's name
    check_scorers(SCORERS, None)
    cached = standard_scores(SCORERS, OTHERS, REPORTS, None, "cpu")
    local = standard_scores(SCORERS, OTHERS, REPORTS, str(weights_dir), "cpu")
    assert cached.keys() == local.keys()
    for key, value in local.items():
        assert cached[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_missing_weights_name_the_file_the_repo_and_the_command(tmp_path, offline_cache, capsys) -> None:
    empty = tmp_path / "weights"
    empty.mkdir()
    with pytest.raises(RadllmError) as err:
        check_scorers(["chexbert"], str(empty))
    message = str(err.value)
    assert "chexbert.pth" in message and "StanfordAIMI/RRG_scorers" in message and str(empty / "chexbert.pth") in message
    assert f"`hf download StanfordAIMI/RRG_scorers chexbert.pth --local-dir {empty}` and run with --scorer-weights {empty}" in message
    put_in_cache(offline_cache, "StanfordAIMI/RRG_scorers", _file(tmp_path / "chexbert.pth"))  # found; its BERT is not
    with pytest.raises(RadllmError) as err:
        check_scorers(["chexbert"], None)
    message = str(err.value)
    assert f"config.json, vocab.txt of google-bert/bert-base-uncased not found in the Hugging Face cache {offline_cache}" in message
    assert "hf download google-bert/bert-base-uncased config.json vocab.txt --local-dir DIR/bert-base-uncased" in message
    # radllm evaluate stops before scoring anything, with the same message
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"study_id": "a", "report": "No effusion."}) + "\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"task": "report", "study_id": "a", "report": "No effusion."}) + "\n")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "o"), "--no-meteor",
                 "--scorer", "chexbert", "--scorer-weights", str(empty)]) == 2
    assert "chexbert.pth" in capsys.readouterr().err and not (tmp_path / "o").exists()


def _file(path: Path) -> Path:
    path.write_bytes(b"not read")
    return path


def test_missing_library_names_the_extra(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "bert_score", None)  # import bert_score now raises ImportError
    with pytest.raises(RadllmError, match=r"pip install 'radllm\[scorers\]'"):
        check_scorers(["bertscore"], str(tmp_path))
