"""Report baselines that a trained model must beat, written as `radllm generate`-style predictions.

    radllm baselines --shards runs/demo/shards --out runs/demo/baselines [--split test] [--reference-split train]

- ``baseline_normal``: every study gets the same normal report, `NORMAL_REPORT`: the clinical F1
  of saying "no finding" every time, which a model that learned only the most frequent wording
  reaches without looking at the image.
- ``baseline_nearest``: every study gets the report of the reference (training) study whose image
  codes are most similar: retrieval instead of generation, the classic image-to-report baseline.

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
from radllm.phantoms.phrases import LUNGS_CLEAR, NEGATIONS, NORMAL_IMPRESSION
from radllm.report_text import report_text

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


def write_baselines(
    shards: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str = "test",
    reference_split: str = "train",
    normal_text: str = NORMAL_REPORT,
) -> dict[str, Path]:
    """Write ``baseline_normal.jsonl`` and ``baseline_nearest.jsonl`` for `split` into `out_dir`.

    Also writes ``baselines.json`` stating the normal report text, the similarity measure and the
    splits, so the numbers can be read without this source. Returns {baseline name: JSONL path}.

    Raises:
        RadllmError: unreadable shards or split, a split of the wrong visual vocabulary, an empty
            normal text, or studies without image codes.
    """
    if not normal_text.strip():
        raise RadllmError("the normal report text is empty")
    index = load_index(shards)
    spec = index.visual_vocab
    queries = read_split(shards, split, spec)
    references = read_split(shards, reference_split, spec)
    out_dir = Path(out_dir)
    paths = {NORMAL: out_dir / f"{NORMAL}.jsonl", NEAREST: out_dir / f"{NEAREST}.jsonl"}
    _write_jsonl(paths[NORMAL], normal_predictions([s.study_id for s in queries], normal_text))
    _write_jsonl(paths[NEAREST], nearest_predictions(queries, references, spec.codebook_size))
    atomic.write_json(
        out_dir / "baselines.json",
        {
            "shards": str(shards),
            "split": split,
            "reference_split": reference_split,
            "n_studies": len(queries),
            "n_reference_studies": len(references),
            NORMAL: {"report": normal_text, "file": paths[NORMAL].name},
            NEAREST: {"similarity": SIMILARITY, "file": paths[NEAREST].name},
        },
    )
    return paths
