"""The report scorers papers quote (CheXbert F1, RadGraph F1, BERTScore), from local weights only.

    radllm evaluate --pred P --ref R --out O --scorer chexbert,radgraph,bertscore --scorer-weights /models/scorers

radllm's own ``report/ce_*`` keys come from its rule labeler (or ``--labeler``), so they cannot be
set beside published numbers. These are the numbers report-generation papers print, computed the
way the papers' code computes them, then stored under ``report/`` by `radllm.evaluation.suite`:

* ``chexbert``: the 14 CheXpert labels of each generated and reference report by CheXbert (Smit et
  al. 2020, the official ``chexbert.pth``), then F1 over the 14 observations and over the 5 of
  `radllm.labels.COMMON_FIVE`, micro (pooled counts) and macro (mean of per-observation F1, 0 for an
  observation nobody reported), once with uncertain counted positive (``_uncertain_positive``: what
  f1chexbert / RadEval's "rrg" mode and so most papers report) and once negative
  (``_uncertain_negative``). A blank (unmentioned) label is negative on both sides.
* ``radgraph``: RadGraph F1 (Delbrouck et al. 2022) from the ``radgraph`` package, model "radgraph"
  (``radgraph.tar.gz``, Jain et al. 2021), the mean over studies of each report pair's F1 at three
  levels: ``radgraph_f1`` = "partial" (RG_ER: entity tokens and label, and whether it has a
  relation; the number usually quoted as RadGraph F1), ``radgraph_f1_simple`` (RG_E: entities
  only) and ``radgraph_f1_complete`` (RG_ER-bar: entities with their full relations). A pair where
  either report is empty or has no entity scores 0.
* ``bertscore``: BERTScore F1 (Zhang et al. 2020) from the ``bert-score`` package with
  ``distilroberta-base`` at layer 5, no idf, as CXR-Report-Metric (RadCliQ, Yu et al. 2023) uses it:
  ``bertscore_f1`` the mean raw F1, ``bertscore_f1_rescaled`` the same rescaled by the package's
  baseline for that model, ``(F - b) / (1 - b)`` (what CXR-Report-Metric reports; can be negative).
  A pair with an empty report scores 0 (bert-score's rule).

Each scorer also records ``scorer/<name>`` (library and version, model) and
``scorer/<name>/weights_sha256`` (the weight file used), so a number is tied to its weights.

Weights are never downloaded by radllm: they are read from ``--scorer-weights DIR`` or else from
the Hugging Face cache (``HF_HUB_CACHE``, as ``hf download`` fills it), and every library is handed
local paths, so nothing reaches the network whether or not ``HF_HUB_OFFLINE=1`` is set. A missing
file fails with the ``hf download`` command that fetches it (`WEIGHTS`, `locate`, `check_scorers`).

Why CheXbert is loaded here and not by a library: ``f1chexbert`` 0.0.2 calls
``tokenizer.encode_plus``, gone in transformers 5, loads its checkpoint with ``strict=False`` and
fetches bert-base-uncased by name; RadEval 2.2.1 (its successor) pins a torch of its own and imports
itself as ``RadEval`` (jbdel/RadEval#27). The network is small (BERT-base and 14 linear heads), so
it is built here with the parameter names of ``chexbert.pth``, loaded strictly, and scored by
radllm's one scoring primitive (`radllm.evaluation.clinical`), whose zero-division rule is
scikit-learn's, as in f1chexbert. ``radgraph`` 0.1.18 and ``bert-score`` 0.3.13 also call two
tokenizer methods transformers 5 removed; `_restore_removed_tokenizer_methods` gives their
tokenizer objects back those two methods, nothing else is changed.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

import radllm
from radllm.errors import RadllmError
from radllm.evaluation.clinical import averaged_scores, confusion_tables
from radllm.labels import COMMON_FIVE, OBSERVATIONS, Labels, empty_labels
from radllm.vocab_spec import sha256_file

log = logging.getLogger(__name__)

SCORERS: tuple[str, ...] = ("chexbert", "radgraph", "bertscore")
EXTRA = "pip install 'radllm[scorers]'"


@dataclass(frozen=True)
class Weights:
    """One thing a scorer reads: a file, or a model directory holding `files`.

    `repos` are Hugging Face repo ids, the first the one to download, the others older names a
    cache may hold it under; `local` is its path under ``--scorer-weights``.
    """

    repos: tuple[str, ...]
    local: str
    files: tuple[tuple[str, ...], ...]  # each entry: alternatives, one of which must be present
    is_dir: bool


CHEXBERT_CHECKPOINT = Weights(("StanfordAIMI/RRG_scorers",), "chexbert.pth", (("chexbert.pth",),), is_dir=False)
# CheXbert's BERT is bert-base-uncased: only its config and tokenizer are read (chexbert.pth holds every weight).
CHEXBERT_BERT = Weights(("google-bert/bert-base-uncased", "bert-base-uncased"), "bert-base-uncased",
                        (("config.json",), ("vocab.txt",)), is_dir=True)
RADGRAPH_MODEL = "radgraph"  # radgraph's model_type: the original RadGraph model, archive radgraph.tar.gz
RADGRAPH_ARCHIVE = Weights(("StanfordAIMI/RRG_scorers",), "radgraph.tar.gz", (("radgraph.tar.gz",),), is_dir=False)
BERTSCORE_MODEL, BERTSCORE_LAYER = "distilroberta-base", 5  # CXR-Report-Metric's choice (bert-score's default layer for it)
BERTSCORE_WEIGHTS = Weights(("distilbert/distilroberta-base", "distilroberta-base"), BERTSCORE_MODEL,
                            (("config.json",), ("vocab.json",), ("merges.txt",), ("model.safetensors", "pytorch_model.bin")), is_dir=True)
#: What each scorer reads besides the backbone that the RadGraph archive names in its config.json.
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    "chexbert": (CHEXBERT_CHECKPOINT, CHEXBERT_BERT),
    "radgraph": (RADGRAPH_ARCHIVE,),
    "bertscore": (BERTSCORE_WEIGHTS,),
}


def _hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)  # read at call time: HF_HUB_CACHE / HF_HOME as the process set them


def _download_hint(weights: Weights, weights_dir: str | None) -> str:
    target = Path(weights_dir or "DIR") / weights.local
    names = " ".join(alternatives[0] for alternatives in weights.files)
    where = target if weights.is_dir else target.parent
    return (f"`hf download {weights.repos[0]} {names} --local-dir {where}` and run with --scorer-weights {weights_dir or 'DIR'}; "
            f"or `hf download {weights.repos[0]} {names}` into the Hugging Face cache ({_hf_cache()}, HF_HUB_CACHE) "
            "and leave --scorer-weights out")


def _in_cache(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=_hf_cache())  # looks on disk only
    return Path(found) if isinstance(found, str) else None


def locate(weights: Weights, weights_dir: str | None, scorer: str) -> Path:
    """The file, or model directory, of `weights`: under `weights_dir` if given, else in the HF cache.

    Raises:
        RadllmError: not there; the message names the repo, the files, where radllm looked and the
            ``hf download`` command that puts them there.
    """
    if weights_dir is not None:
        path = Path(weights_dir) / weights.local
        root = path if weights.is_dir else path.parent
        if all(any((root / name).is_file() for name in alternatives) for alternatives in weights.files):
            return path
        looked = str(path)
    else:
        for repo in weights.repos:
            found = [next(filter(None, (_in_cache(repo, name) for name in alternatives)), None) for alternatives in weights.files]
            if all(found):
                return found[0].parent if weights.is_dir else found[0]  # type: ignore[union-attr]
        looked = f"the Hugging Face cache {_hf_cache()} (repo {' or '.join(weights.repos)})"
    missing = ", ".join(" or ".join(alternatives) for alternatives in weights.files)
    raise RadllmError(f"--scorer {scorer}: {missing} of {weights.repos[0]} not found in {looked}; radllm downloads nothing. "
                      f"Get it with: {_download_hint(weights, weights_dir)}")


def _weight_file(directory: Path, names: Sequence[str]) -> Path:
    return next(directory / name for name in names if (directory / name).is_file())


def _library(module: str, scorer: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RadllmError(f"--scorer {scorer} needs the Python package {module!r} ({err}); install the extra: {EXTRA}") from err


def parse_scorers(text: str) -> tuple[str, ...]:
    """``"chexbert,radgraph"`` -> ``("chexbert", "radgraph")``, each name once, in the given order.

    Raises:
        RadllmError: an unknown or empty name.
    """
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
    unknown = [name for name in names if name not in SCORERS]
    if unknown or not names:
        raise RadllmError(f"--scorer {text!r}: unknown scorer(s) {unknown}; expected a comma list of {list(SCORERS)}")
    return names


def check_scorers(names: Sequence[str], weights_dir: str | None) -> None:
    """Fail before any slow work when a scorer's library or weights are missing (`radllm evaluate` calls it first).

    Raises:
        RadllmError: an unknown name, a library not installed, or a weight file not found.
    """
    for name in parse_scorers(",".join(names)) if names else ():
        if name != "chexbert":  # CheXbert needs only torch and transformers
            _library({"radgraph": "radgraph", "bertscore": "bert_score"}[name], name)
        if name == "radgraph" and weights_dir is not None and (Path(weights_dir) / RADGRAPH_MODEL / "config.json").is_file():
            continue  # an archive extracted beforehand (see `_radgraph_model_dir`)
        for weights in WEIGHTS[name]:
            locate(weights, weights_dir, name)


def _restore_removed_tokenizer_methods(tokenizer: Any) -> Any:
    """`tokenizer` with ``encode_plus`` and ``build_inputs_with_special_tokens`` where transformers 5 dropped them.

    radgraph 0.1.18's AllenNLP fork calls both; bert-score 0.3.13 calls the second for an empty
    report. ``encode_plus`` was ``__call__`` under another name; the special tokens around one
    sequence are read off the encoding of a one-character text. Set on this object only, so no other
    tokenizer in the process changes.
    """
    if not hasattr(tokenizer, "encode_plus"):
        tokenizer.encode_plus = lambda text, text_pair=None, **kwargs: tokenizer(text, text_pair, **kwargs)
    if not hasattr(tokenizer, "build_inputs_with_special_tokens"):
        inner = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        at = next(i for i in range(len(full)) if full[i : i + len(inner)] == inner)
        before, after = full[:at], full[at + len(inner) :]

        def build_inputs_with_special_tokens(ids: list[int], pair: list[int] | None = None) -> list[int]:
            if pair is not None:  # neither library builds pairs this way
                raise NotImplementedError("sequence pairs")
            return before + list(ids) + after

        tokenizer.build_inputs_with_special_tokens = build_inputs_with_special_tokens
    return tokenizer


#: The heads of chexbert.pth, in order (stanfordmlgroup/CheXbert src/constants.py CONDITIONS).
CHEXBERT_HEADS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices", "No Finding",
)
#: Class index -> label: blank, positive, negative, uncertain (No Finding's head has the first two only).
CHEXBERT_CLASSES: tuple[int | None, ...] = (None, 1, 0, -1)


class CheXbertNetwork(torch.nn.Module):
    """BERT-base and, on the [CLS] state, 13 four-way heads and one two-way head (No Finding).

    The module names are those of CheXbert's ``bert_labeler``, so the official checkpoint loads strictly.
    """

    def __init__(self, config: Any) -> None:
        from transformers import BertModel

        super().__init__()
        self.bert = BertModel(config)
        self.linear_heads = torch.nn.ModuleList(
            [torch.nn.Linear(config.hidden_size, 4) for _ in CHEXBERT_HEADS[:-1]] + [torch.nn.Linear(config.hidden_size, 2)]
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        cls = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]  # [B, hidden]
        return [head(cls) for head in self.linear_heads]  # 14 x [B, 4 or 2]


class CheXbertLabeler:
    """The 14 labels of each report by CheXbert (a `radllm.labeler.model_labeler.ReportLabeler`)."""

    def __init__(self, checkpoint: Path, bert_dir: Path, device: str = "cpu", batch_size: int = 32) -> None:
        from transformers import BertConfig, BertTokenizer

        self.tokenizer = BertTokenizer.from_pretrained(bert_dir, local_files_only=True)
        self.model = CheXbertNetwork(BertConfig.from_pretrained(bert_dir, local_files_only=True))
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
            state = {key.removeprefix("module."): value for key, value in saved["model_state_dict"].items()}  # saved from DataParallel
        except Exception as err:  # unpickling, or not the dict CheXbert's training saves
            raise RadllmError(f"--scorer chexbert: {checkpoint} is not CheXbert's checkpoint (a dict with model_state_dict): "
                              f"{err}") from err
        state.pop("bert.embeddings.position_ids", None)  # a buffer older transformers saved; BertModel rebuilds it
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RadllmError(f"--scorer chexbert: {checkpoint} does not fit the BERT of {bert_dir}/config.json: {err}") from err
        self.model.to(device).eval()
        self.device, self.batch_size = device, batch_size
        self.weights_sha256 = sha256_file(checkpoint)
        self.identity = f"chexbert:{self.weights_sha256[:12]}"

    @torch.inference_mode()
    def label_many(self, reports: Sequence[str]) -> list[Labels]:
        """Labels of each report, in order; a report is cut to BERT's 512 tokens, as CheXbert does."""
        out: list[Labels] = []
        for start in range(0, len(reports), self.batch_size):
            batch = [" ".join(text.split()) for text in reports[start : start + self.batch_size]]
            inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=512, return_tensors="pt").to(self.device)
            classes = torch.stack([logits.argmax(dim=-1) for logits in self.model(inputs["input_ids"], inputs["attention_mask"])], dim=1)
            for row in classes.tolist():  # [14] class indices
                labels = empty_labels()
                labels.update({name: CHEXBERT_CLASSES[index] for name, index in zip(CHEXBERT_HEADS, row)})
                out.append(labels)
        return out

    def label(self, report: str) -> Labels:
        return self.label_many([report])[0]


@lru_cache(maxsize=4)
def _chexbert(weights_dir: str | None, device: str) -> CheXbertLabeler:
    return CheXbertLabeler(locate(CHEXBERT_CHECKPOINT, weights_dir, "chexbert"), locate(CHEXBERT_BERT, weights_dir, "chexbert"), device)


def chexbert_scores(generated: Sequence[str], references: Sequence[str], weights_dir: str | None, device: str) -> dict[str, Any]:
    """``chexbert_f1_{micro,macro}_{14,5}_uncertain_{positive,negative}`` and the identity keys (see the module docstring)."""
    labeler = _chexbert(weights_dir, device)
    predicted, truth = labeler.label_many(generated), labeler.label_many(references)
    out: dict[str, Any] = {}
    for policy in ("positive", "negative"):
        tables = confusion_tables(predicted, truth, OBSERVATIONS, policy)
        for suffix, names in (("14", OBSERVATIONS), ("5", COMMON_FIVE)):
            scores = averaged_scores({name: tables[name] for name in names})
            for average in ("micro", "macro"):
                out[f"chexbert_f1_{average}_{suffix}_uncertain_{policy}"] = scores[f"f1_{average}"]
    out["scorer/chexbert"] = f"CheXbert chexbert.pth, loaded by radllm {radllm.__version__} (transformers {version('transformers')})"
    out["scorer/chexbert/weights_sha256"] = labeler.weights_sha256
    return out


def _radgraph_model_dir(weights_dir: str | None, scratch: Path) -> Path:
    """The extracted radgraph archive (config.json, vocabulary/, weights.th).

    ``DIR/radgraph/`` when it is there (extracted once by hand, which saves unpacking the archive
    on every run), else ``radgraph.tar.gz`` from DIR or the HF cache, unpacked into `scratch`.
    """
    if weights_dir is not None and (Path(weights_dir) / RADGRAPH_MODEL / "config.json").is_file():
        return Path(weights_dir) / RADGRAPH_MODEL
    archive = locate(RADGRAPH_ARCHIVE, weights_dir, "radgraph")
    target = scratch / "extracted"
    log.info("unpacking %s (extract it into DIR/%s/ to skip this)", archive, RADGRAPH_MODEL)
    with tarfile.open(archive, "r:gz") as tar:
        # the "data" filter (no absolute paths, links out of the target or devices) where Python has it (3.10.12+)
        tar.extractall(target, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return target


def _backbone_dir(name: str, weights_dir: str | None) -> Path:
    """The config and tokenizer of the transformer the archive names (its weights are in weights.th)."""
    files = (("config.json",), ("vocab.txt", "vocab.json", "tokenizer.json"))
    return locate(Weights((name,), name, files, is_dir=True), weights_dir, "radgraph")


@contextlib.contextmanager
def _radgraph_tokenizers() -> Iterator[None]:
    """While radgraph builds its tokenizers, hand them the two methods transformers 5 removed."""
    from radgraph.allennlp.common import cached_transformers

    original = cached_transformers.get_tokenizer

    def get_tokenizer(model_name: str, **kwargs: Any) -> Any:
        return _restore_removed_tokenizer_methods(original(model_name, **kwargs))

    cached_transformers.get_tokenizer = get_tokenizer
    try:
        yield
    finally:
        cached_transformers.get_tokenizer = original


def _cuda_index(device: str) -> int:
    """radgraph's device argument: -1 for the CPU, else a CUDA index."""
    if device == "cpu":
        return -1
    kind, _, index = device.partition(":")
    if kind != "cuda":
        raise RadllmError(f"--scorer radgraph runs on cpu or cuda[:N], not {device!r}")
    return int(index or 0)


@dataclass
class _RadGraph:
    scorer: Any  # radgraph.F1RadGraph
    weights_sha256: str
    backbone: str


@lru_cache(maxsize=4)
def _radgraph(weights_dir: str | None, device: str) -> _RadGraph:
    """radgraph's own F1RadGraph on a model directory whose config names the backbone by its local path.

    radgraph reads the archive from ``<model_cache_dir>/<model_type>/`` and the backbone by the hub
    id in its config.json; it downloads either when missing. It is handed a scratch directory laid
    out as that cache (config rewritten to the located backbone, the rest linked), so it finds
    everything and fetches nothing.
    """
    radgraph = _library("radgraph", "radgraph")
    with tempfile.TemporaryDirectory(prefix="radllm-radgraph-") as scratch:
        source = _radgraph_model_dir(weights_dir, Path(scratch))
        config = json.loads((source / "config.json").read_text())
        slots = (config["dataset_reader"]["token_indexers"]["bert"], config["model"]["embedder"]["token_embedders"]["bert"])
        names = {slot["model_name"] for slot in slots}
        for slot in slots:
            slot["model_name"] = str(_backbone_dir(slot["model_name"], weights_dir))
        model_dir = Path(scratch) / "cache" / RADGRAPH_MODEL
        model_dir.mkdir(parents=True)
        (model_dir / "config.json").write_text(json.dumps(config))
        for name in ("vocabulary", "weights.th"):
            os.symlink((source / name).resolve(), model_dir / name)
        with _radgraph_tokenizers():
            scorer = radgraph.F1RadGraph(reward_level="all", model_type=RADGRAPH_MODEL, model_cache_dir=str(model_dir.parent),
                                         cuda=_cuda_index(device))
        return _RadGraph(scorer, sha256_file(source / "weights.th"), ", ".join(sorted(names)))


def radgraph_scores(generated: Sequence[str], references: Sequence[str], weights_dir: str | None, device: str) -> dict[str, Any]:
    """``radgraph_f1`` (partial), ``radgraph_f1_simple``, ``radgraph_f1_complete`` and the identity keys."""
    loaded = _radgraph(weights_dir, device)
    (simple, partial, complete), *_ = loaded.scorer(refs=list(references), hyps=list(generated))
    return {
        "radgraph_f1": float(partial),
        "radgraph_f1_simple": float(simple),
        "radgraph_f1_complete": float(complete),
        "scorer/radgraph": f"radgraph {version('radgraph')} (model {RADGRAPH_MODEL}, backbone {loaded.backbone})",
        "scorer/radgraph/weights_sha256": loaded.weights_sha256,
    }


@dataclass
class _BertScore:
    scorer: Any  # bert_score.BERTScorer
    baseline_f1: float
    weights_sha256: str


@lru_cache(maxsize=4)
def _bertscore(weights_dir: str | None, device: str) -> _BertScore:
    bert_score = _library("bert_score", "bertscore")
    model_dir = locate(BERTSCORE_WEIGHTS, weights_dir, "bertscore")
    # A local directory as model_type: the package then knows neither the layer nor the baseline by
    # name, so both are given, the baseline being the package's own file for distilroberta-base.
    baseline = Path(bert_score.__file__).parent / "rescale_baseline" / "en" / f"{BERTSCORE_MODEL}.tsv"
    scorer = bert_score.BERTScorer(model_type=str(model_dir), num_layers=BERTSCORE_LAYER, lang="en", idf=False,
                                   rescale_with_baseline=False, baseline_path=str(baseline), device=device)
    _restore_removed_tokenizer_methods(scorer._tokenizer)
    weights = _weight_file(model_dir, BERTSCORE_WEIGHTS.files[-1])
    return _BertScore(scorer, float(scorer.baseline_vals[2]), sha256_file(weights))  # baseline_vals: (P, R, F)


def bertscore_scores(generated: Sequence[str], references: Sequence[str], weights_dir: str | None, device: str) -> dict[str, Any]:
    """``bertscore_f1``, ``bertscore_f1_rescaled`` and the identity keys."""
    loaded = _bertscore(weights_dir, device)
    _, _, f1 = loaded.scorer.score(list(generated), list(references))
    raw = float(f1.mean())
    return {
        "bertscore_f1": raw,
        "bertscore_f1_rescaled": (raw - loaded.baseline_f1) / (1 - loaded.baseline_f1),  # linear, so the mean of the rescaled
        "scorer/bertscore": f"bert-score {version('bert-score')} ({BERTSCORE_MODEL}, layer {BERTSCORE_LAYER}, no idf)",
        "scorer/bertscore/weights_sha256": loaded.weights_sha256,
    }


ScoreFunction = Callable[[Sequence[str], Sequence[str], str | None, str], dict[str, Any]]
SCORE_FUNCTIONS: Mapping[str, ScoreFunction] = {"chexbert": chexbert_scores, "radgraph": radgraph_scores, "bertscore": bertscore_scores}


def standard_scores(
    names: Sequence[str], generated: Sequence[str], references: Sequence[str], weights: str | None, device: str
) -> dict[str, Any]:
    """The keys of every named scorer (without the ``report/`` prefix the suite adds), generated[i] against references[i].

    Args:
        names: scorers from `SCORERS`.
        weights: ``--scorer-weights`` directory, or None for the Hugging Face cache.
        device: torch device of the models.

    Raises:
        RadllmError: an unknown name, a missing library or weight file (see `check_scorers`).
    """
    if len(generated) != len(references) or not generated:
        raise ValueError(f"need paired reports: {len(generated)} generated vs {len(references)} references")
    out: dict[str, Any] = {}
    for name in parse_scorers(",".join(names)):
        out.update(SCORE_FUNCTIONS[name](generated, references, weights, device))
    return out
