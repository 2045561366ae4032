"""Baselines that bound what a trained model's numbers mean, written as `radllm generate`-style predictions.

    radllm baselines --shards runs/demo/shards --out runs/demo/baselines [--split test] [--reference-split train] \
        [--reference-shards DIR] [--threshold-split val] [--manifest runs/demo/phantoms/manifest.jsonl]

- ``baseline_normal``: every study gets the same normal report, `NORMAL_REPORT`: the clinical F1
  of saying "no finding" every time, which a model that learned only the most frequent wording
  reaches without looking at the image. With a manifest, also the same normal radiograph for every
  study (``baseline_normal_images.jsonl``, `radllm.evaluation.normal_image`).
- ``baseline_nearest``: every study gets the report of the reference (training) study whose image
  codes are most similar: retrieval instead of generation, the classic image-to-report baseline.
- ``baseline_probe``: the tokenizer's code probe fit on the reference split, thresholds chosen on
  the threshold (validation) split, its findings in a fixed template report
  (`radllm.evaluation.probe_baseline`): a classifier on the same codes, no text generation.
- ``baseline_prior``: VQA answers from the reference split's label rates, no image
  (`radllm.evaluation.answer_prior`): the AUROC reached by knowing only which question is asked.

The reference (train) and threshold (val) splits are read from ``reference_shards`` (by default
the same shards), so baselines can be written for a test-only shard set with the training shards
of the model; both must share one visual vocabulary. The probe and the prior need labels: when
the reference split has none they are skipped and ``baselines.json`` says so.

Similarity is the cosine of the studies' code histograms (how often each VQ code occurs over all
views of the study: a bag of visual words) rather than the fraction of grid cells holding equal
codes: a histogram counts the codes of an effusion or an enlarged heart wherever they lie, so it
does not depend on the patient being positioned like the training study (phantoms jitter
rotation, scale and shift, real radiographs more so), it handles studies with different numbers
of views, and it is one sparse matrix product per block of test studies (on phantoms the two
similarities gave clinical F1 within bootstrap noise of each other). Ties go to the reference
study that comes first in the shards' index order.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from radllm import atomic
from radllm.data.sample import TokenizedStudy
from radllm.data.shards import load_index
from radllm.data.split import read_split
from radllm.errors import RadllmError
from radllm.evaluation.answer_prior import PRIOR, answer_rates, prior_predictions, prior_summary
from radllm.evaluation.normal_image import NORMAL_IMAGES, normal_image_predictions, normal_source, write_normal_image
from radllm.evaluation.probe_baseline import PROBE, probe_predictions, probe_summary
from radllm.phantoms.phrases import LUNGS_CLEAR, NEGATIONS, NORMAL_IMPRESSION
from radllm.report_text import report_text
from radllm.vocab_spec import VisualVocabSpec, check_compatible
from radllm.vq.probe import ProbeConfig

log = logging.getLogger(__name__)

NORMAL = "baseline_normal"
NEAREST = "baseline_nearest"
SIMILARITY = "cosine of code histograms"

#: The "always normal" report: the first wording of each normal statement in the phantom phrase
#: bank (every observation the phantoms draw is explicitly negated).
NORMAL_REPORT = report_text(
    " ".join(
        [
            NEGATIONS[frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"})][0],
            LUNGS_CLEAR[0],
            NEGATIONS[frozenset({"Lung Lesion"})][0],
            NEGATIONS[frozenset({"Consolidation", "Pleural Effusion", "Pneumothorax"})][0],
            NEGATIONS[frozenset({"Atelectasis"})][0],
            NEGATIONS[frozenset({"Fracture"})][0],
        ]
    ),
    NORMAL_IMPRESSION[0],
)


def normal_predictions(study_ids: Sequence[str], text: str = NORMAL_REPORT) -> list[dict[str, Any]]:
    """One ``report`` record per study, all with `text`."""
    return [{"task": "report", "study_id": sid, "report": text, "baseline": NORMAL} for sid in study_ids]


def code_histograms(studies: Sequence[TokenizedStudy], codebook_size: int) -> sparse.csr_matrix:
    """float64 [n_studies, codebook_size]: occurrences of each code over all views of each study.

    Raises:
        RadllmError: a study without image codes, or a code outside 0..codebook_size-1.
    """
    rows, cols = [], []
    for i, study in enumerate(studies):
        codes = np.concatenate([np.asarray(c).reshape(-1) for c in study.image_codes]) if study.image_codes else np.empty(0, np.int64)
        if codes.size == 0:
            raise RadllmError(f"study {study.study_id!r} has no image codes; the nearest-report baseline needs images")
        if codes.min() < 0 or codes.max() >= codebook_size:
            raise RadllmError(f"study {study.study_id!r}: codes span {codes.min()}..{codes.max()}, outside the codebook 0..{codebook_size - 1}")
        rows.append(np.full(codes.size, i, dtype=np.int64))
        cols.append(codes.astype(np.int64))
    data = np.ones(sum(r.size for r in rows), dtype=np.float64)
    # duplicates (i, code) are summed when converting to CSR: counts
    return sparse.coo_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(len(studies), codebook_size)).tocsr()


def _unit_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).reshape(-1))
    return sparse.diags(1.0 / norms) @ matrix


def nearest_neighbours(queries: sparse.csr_matrix, references: sparse.csr_matrix, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the reference row of highest cosine similarity (first one on ties).

    Rows must be non-zero. Queries are processed `chunk` at a time so the dense similarity block
    stays [chunk, n_references].

    Returns:
        indices: int64 [n_queries]; similarities: float64 [n_queries].
    """
    if references.shape[0] == 0:
        raise RadllmError("no reference studies to retrieve reports from")
    q, r_t = _unit_rows(queries), _unit_rows(references).T.tocsc()
    indices = np.empty(queries.shape[0], dtype=np.int64)
    best = np.empty(queries.shape[0], dtype=np.float64)
    for start in range(0, queries.shape[0], chunk):
        block = (q[start : start + chunk] @ r_t).toarray()  # [chunk, n_references]
        indices[start : start + chunk] = block.argmax(axis=1)  # argmax returns the first maximum
        best[start : start + chunk] = block.max(axis=1)
    return indices, best


def nearest_predictions(queries: Sequence[TokenizedStudy], references: Sequence[TokenizedStudy], codebook_size: int) -> list[dict[str, Any]]:
    """One ``report`` record per query study: the report of its most similar reference study."""
    indices, similarity = nearest_neighbours(code_histograms(queries, codebook_size), code_histograms(references, codebook_size))
    return [
        {
            "task": "report",
            "study_id": study.study_id,
            "report": references[j].report,
            "baseline": NEAREST,
            "neighbour_study_id": references[j].study_id,
            "similarity": float(s),
        }
        for study, j, s in zip(queries, indices, similarity)
    ]


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    atomic.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def shared_spec(shards: str | os.PathLike, reference_shards: str | os.PathLike) -> VisualVocabSpec:
    """The visual vocabulary of `shards`, checked equal to that of `reference_shards`.

    Raises:
        RadllmError: an unreadable index, or the two were tokenized with different vocabularies
            (their codes would mean different things to the probe and the nearest-study search).
    """
    spec = load_index(shards).visual_vocab
    if Path(shards).resolve() != Path(reference_shards).resolve():
        reference_spec = load_index(reference_shards).visual_vocab
        try:
            check_compatible(reference_spec, spec, f"--reference-shards {reference_shards}", f"--shards {shards}")
        except RadllmError as err:
            raise RadllmError(
                f"--shards {shards} and --reference-shards {reference_shards} do not share one visual vocabulary: {err}"
            ) from err
    return spec


def has_labels(studies: Sequence[TokenizedStudy]) -> bool:
    return any(value is not None for study in studies for value in study.labels.values())


def write_baselines(
    shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    reference_split: str = "train",
    normal_text: str = NORMAL_REPORT,
    *,
    reference_shards: str | os.PathLike | None = None,
    threshold_split: str = "val",
    manifest: str | os.PathLike | None = None,
    probe_config: ProbeConfig | None = None,
) -> dict[str, Path]:
    """Write the baselines of `split` into `out_dir`; returns {baseline name: JSONL path}.

    Always ``baseline_normal.jsonl`` and ``baseline_nearest.jsonl``; ``baseline_probe.jsonl`` and
    ``baseline_prior.jsonl`` when the reference split has labels; ``baseline_normal_images.jsonl``
    (key `NORMAL_IMAGES`) and its image when `manifest` is given. Also ``baselines.json``,
    stating how each was made (texts, similarity, probe thresholds and validation AUROC, train
    answer rates, the normal image's source study), so the numbers can be read without this source.

    Args:
        shards: tokenized shards holding `split`.
        reference_shards: shards holding `reference_split` (retrieval, probe fitting, answer
            rates) and `threshold_split` (probe thresholds); `shards` when None.
        manifest: the reference manifest (image paths) to take the normal image from.
        probe_config: the probe's size and budget; `ProbeConfig()` when None.
        threshold_split: where the probe's thresholds are chosen; when it is `split` of the same
            shards they are tuned on the scored studies (logged, and recorded in the summary).

    Raises:
        RadllmError: unreadable shards or split, shards of different visual vocabularies, an empty
            normal text, studies without image codes, an unlabelled threshold split, or a
            manifest without a normal study.
    """
    if not normal_text.strip():
        raise RadllmError("the normal report text is empty")
    reference_shards = shards if reference_shards is None else reference_shards
    # Scoring the threshold split itself (the demo's val evaluation set) tunes the probe's cuts on
    # the scored studies: allowed, so val can have its baselines, but said in the log and the summary.
    in_sample = Path(shards).resolve() == Path(reference_shards).resolve() and threshold_split == split
    # Everything is read and checked before the first file is written.
    spec = shared_spec(shards, reference_shards)
    normal_image = normal_source(manifest, reference_split) if manifest is not None else None
    queries = read_split(shards, split, spec)
    references = read_split(reference_shards, reference_split, spec)
    threshold = _threshold_studies(reference_shards, threshold_split, spec) if has_labels(references) else None
    out_dir = Path(out_dir)
    study_ids = [s.study_id for s in queries]
    summary: dict[str, Any] = {
        "shards": str(shards),
        "reference_shards": str(reference_shards),
        "split": split,
        "reference_split": reference_split,
        "threshold_split": threshold_split,
        "n_studies": len(queries),
        "n_reference_studies": len(references),
    }
    written = {
        NORMAL: _write(out_dir, NORMAL, normal_predictions(study_ids, normal_text), {"report": normal_text}),
        NEAREST: _write(out_dir, NEAREST, nearest_predictions(queries, references, spec.codebook_size), {"similarity": SIMILARITY}),
    }
    if threshold is not None:
        summary["n_threshold_studies"] = len(threshold)
        if in_sample:
            log.warning("baseline_probe: thresholds are chosen on split %r, the split it predicts for (optimistic)", split)
        records, result = probe_predictions(queries, references, threshold, spec.codebook_size, probe_config)
        entry = {**probe_summary(result, probe_config, threshold_split), "thresholds_on_scored_studies": in_sample}
        written[PROBE] = _write(out_dir, PROBE, records, entry)
        labels = [s.labels for s in references]
        rates = answer_rates(labels)
        written[PRIOR] = _write(out_dir, PRIOR, prior_predictions(study_ids, rates), prior_summary(labels, rates))
    else:
        summary["skipped"] = {name: f"the {reference_split!r} split of {reference_shards} has no labels" for name in (PROBE, PRIOR)}
    if normal_image is not None:
        source, image = normal_image
        copy = write_normal_image(image, out_dir)
        written[NORMAL_IMAGES] = _write(
            out_dir, NORMAL_IMAGES, normal_image_predictions(study_ids, copy.name, NORMAL),
            {
                "evaluate_as": NORMAL,
                "method": f"the frontal image of the first {reference_split!r} study of the manifest with No Finding = 1 and "
                          "no Support Devices, the same for every study",
                "image": copy.name, "source_study_id": source.study_id, "source_image": str(image), "manifest": str(manifest),
            },
        )
    summary.update({name: described for name, (_, described) in written.items()})
    atomic.write_json(out_dir / "baselines.json", summary)
    return {name: path for name, (path, _) in written.items()}


def _threshold_studies(reference_shards: str | os.PathLike, split: str, spec: VisualVocabSpec) -> list[TokenizedStudy]:
    studies = read_split(reference_shards, split, spec)
    if not has_labels(studies):
        raise RadllmError(f"{reference_shards}: split {split!r} has no labels to choose the probe's thresholds on")
    return studies


def _write(out_dir: Path, name: str, records: Sequence[dict[str, Any]], entry: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write ``name.jsonl``; returns its path and its ``baselines.json`` entry (`entry` plus the file name)."""
    path = out_dir / f"{name}.jsonl"
    _write_jsonl(path, records)
    return path, {"file": path.name, **entry}
