"""Manifest -> tokenized shards: VQ-encode every image, tokenize every report, write tar shards.

Layout of the output directory:

    {split}-{index:06d}.tar   shard `index` of `split`: studies [index*S, (index+1)*S) of that split
                              in manifest order (S = shard size), minus rejected ones
    parts/{shard}.json        completion record of one shard: sample count, sha256, its rejects,
                              and the fingerprint of the inputs it was made from
    rejects.jsonl             {"study_id", "image_path", "reason"} per unreadable image (or study
                              without images), in manifest order
    index.json                `radllm.data.shards.ShardIndex`, written last

Why this is resumable and rank-safe: a shard's contents depend only on the manifest order, the
shard size and the inputs' hashes, never on the number of ranks or which rank wrote it, so the
name carries no rank. Rank r of W writes shards r, r+W, r+2W, ... of the list of all shards (train,
then val, then test). Each shard is written under a temporary name and renamed when complete, then
its record is written; a rerun skips every shard whose record matches the current inputs and
whose file still has the recorded sha256. `write_index` (rank 0, after all ranks finished) merges
the records into `rejects.jsonl` and `index.json`. An output directory built from other inputs
(another manifest, VQ-GAN, tokenizer or shard size) is an error rather than a silent mix.

A study whose images are all unreadable (or that lists none) has nothing to train on and is left
out; its images are listed in `rejects.jsonl`. Other studies keep their readable views.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from radllm import atomic
from radllm.data.sample import RESERVED_META_KEYS, TokenizedStudy, codes_dtype, study_key
from radllm.data.shards import ShardIndex, ShardInfo, save_index, shard_name, write_shard
from radllm.devices import resolve_device
from radllm.errors import RadllmError
from radllm.imaging import load_image
from radllm.manifest import SPLITS, Study, manifest_root, read_manifest
from radllm.preemption import JobStopped, StopRequest, ignore_job_signals
from radllm.report_text import clean_report, report_text
from radllm.vocab.codec import encode_report
from radllm.vocab.load import load_tokenizer, verify_vq
from radllm.vocab_spec import SPEC_FILENAME, VisualVocabSpec, sha256_file
from radllm.vq.checkpoint import load_vq, vq_weights_hash

log = logging.getLogger(__name__)

PARTS_DIRNAME = "parts"
REJECTS_FILENAME = "rejects.jsonl"


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its split, its index within the split and its studies."""

    split: str
    index: int
    studies: tuple[Study, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


@dataclass(frozen=True)
class TokenizeInputs:
    """The resolved inputs of a tokenization run and their fingerprint."""

    manifest: Path
    studies: tuple[Study, ...]
    vq_dir: Path
    tokenizer_dir: Path
    tokenizer: PreTrainedTokenizerBase
    spec: VisualVocabSpec
    shard_size: int
    fingerprint: dict[str, Any]  # stored in every shard record; a rerun must match it

    def sources(self) -> dict[str, dict[str, str]]:
        return {
            "manifest": {"path": str(self.manifest), "sha256": self.fingerprint["manifest_sha256"]},
            "vq": {"path": str(self.vq_dir), "sha256": self.fingerprint["vq_sha256"]},
            "tokenizer": {"path": str(self.tokenizer_dir), "sha256": self.spec.tokenizer_hash},
        }


@dataclass
class TokenizeSummary:
    """What one rank did."""

    shards_written: int
    shards_skipped: int
    samples_written: int
    images_rejected: int


def plan_shards(studies: Sequence[Study], shard_size: int) -> list[ShardPlan]:
    """All shards of a manifest: per split (train, val, test) in manifest order, `shard_size` studies each."""
    if shard_size < 1:
        raise RadllmError(f"shard size must be >= 1, got {shard_size}")
    plans = []
    for split in SPLITS:
        members = [study for study in studies if study.split == split]
        for index, start in enumerate(range(0, len(members), shard_size)):
            plans.append(ShardPlan(split, index, tuple(members[start : start + shard_size])))
    return plans


def rank_shards(plans: Sequence[ShardPlan], rank: int, world_size: int) -> list[ShardPlan]:
    """The shards rank `rank` of `world_size` writes: every world_size-th, starting at `rank`."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return list(plans[rank::world_size])


def resolve_inputs(manifest: str | os.PathLike, vq_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, shard_size: int) -> TokenizeInputs:
    """Read and cross-check the inputs: the tokenizer's spec must be for this VQ-GAN.

    Raises:
        RadllmError: unreadable inputs, a tokenizer built against another VQ-GAN (hash, codebook
            or grid differ), or manifest `meta` using keys the shard schema reserves.
    """
    manifest = Path(manifest).resolve()
    studies = tuple(read_manifest(manifest))
    for study in studies:
        clash = set(study.meta) & set(RESERVED_META_KEYS)
        if clash:
            raise RadllmError(f"{manifest}: study {study.study_id!r} meta uses key(s) {sorted(clash)} reserved for the shard schema")
    tokenizer_dir = Path(tokenizer_dir).resolve()
    vq_dir = Path(vq_dir).resolve()
    tokenizer, spec = load_tokenizer(tokenizer_dir)
    verify_vq(spec, vq_dir, str(tokenizer_dir / SPEC_FILENAME))
    fingerprint = {
        "manifest_sha256": sha256_file(manifest),
        "vq_sha256": vq_weights_hash(vq_dir),
        "visual_vocab": spec.to_json(),
        "shard_size": shard_size,
    }
    return TokenizeInputs(manifest, studies, vq_dir, tokenizer_dir, tokenizer, spec, shard_size, fingerprint)


def _record_path(out_dir: Path, plan: ShardPlan) -> Path:
    return out_dir / PARTS_DIRNAME / f"{plan.name}.json"


def _read_record(out_dir: Path, plan: ShardPlan, inputs: TokenizeInputs) -> dict[str, Any] | None:
    """The shard's completion record, or None if it has none; a record from other inputs is an error."""
    path = _record_path(out_dir, plan)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # records are written atomically, so this is outside damage: rewrite the shard
    if record.get("fingerprint") != inputs.fingerprint:
        raise RadllmError(
            f"{out_dir} holds shards made from other inputs ({path} differs from the current manifest, "
            "VQ-GAN, tokenizer or shard size); write to a new --out directory or delete it"
        )
    return record


def _is_complete(out_dir: Path, plan: ShardPlan, inputs: TokenizeInputs) -> bool:
    record = _read_record(out_dir, plan, inputs)
    shard = out_dir / plan.name
    if record is None or not shard.is_file():
        return False
    if sha256_file(shard) != record["sha256"]:
        log.warning("%s does not match its record %s; rewriting it", shard, _record_path(out_dir, plan))
        return False
    return True


class _ImageFiles(Dataset):
    """Image paths -> (position, tensor [1, S, S] or None, reason or None); decoding runs in loader workers."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return i, load_image(self.paths[i], self.size), None
        except RadllmError as err:
            return i, None, str(err)


def _keep_list(items: list[Any]) -> list[Any]:
    return items


@dataclass(frozen=True)
class _ImageJob:
    study: int  # position of the study in its shard plan
    view: int  # position of the image in the study


class ShardEncoder:
    """Turns shard plans into `TokenizedStudy` lists: batched VQ encoding plus report tokenization."""

    def __init__(self, inputs: TokenizeInputs, device: torch.device, batch_size: int, num_workers: int) -> None:
        if batch_size < 1:
            raise RadllmError(f"batch size must be >= 1, got {batch_size}")
        self.inputs = inputs
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.root = manifest_root(inputs.manifest)
        self.vq = load_vq(inputs.vq_dir, device)
        self.dtype = codes_dtype(inputs.spec.codebook_size)

    def encode(self, plans: Sequence[ShardPlan], progress: tqdm) -> Iterator[tuple[ShardPlan, list[TokenizedStudy], list[dict[str, Any]]]]:
        """Yield (plan, studies, rejects) per plan, in order; batches never span two shards."""
        jobs: list[list[_ImageJob]] = []
        paths: list[Path] = []
        batches: list[list[int]] = []
        for plan in plans:
            plan_jobs = [_ImageJob(s, v) for s, study in enumerate(plan.studies) for v in range(len(study.images))]
            first = len(paths)
            paths += [plan.studies[job.study].image_paths(self.root)[job.view] for job in plan_jobs]
            batches.append([list(range(i, min(i + self.batch_size, len(paths)))) for i in range(first, len(paths), self.batch_size)])
            jobs.append(plan_jobs)
        loader = DataLoader(
            _ImageFiles(paths, self.inputs.spec.image_size),
            batch_sampler=[batch for plan_batches in batches for batch in plan_batches],
            num_workers=self.num_workers,
            collate_fn=_keep_list,
            worker_init_fn=ignore_job_signals,  # the job's signal is this process's to answer
        )
        items = iter(loader)
        first = 0
        for plan, plan_jobs, plan_batches in zip(plans, jobs, batches):
            codes: dict[int, np.ndarray] = {}
            errors: dict[int, str] = {}
            for _ in plan_batches:
                batch = next(items)
                codes.update(self._encode_batch(batch, first))
                errors.update({i - first: reason for i, _, reason in batch if reason is not None})
                progress.update(len(batch))
            yield plan, *self._assemble(plan, plan_jobs, codes, errors)
            first += len(plan_jobs)

    @torch.inference_mode()
    def _encode_batch(self, batch: list[tuple[int, torch.Tensor | None, str | None]], first: int) -> dict[int, np.ndarray]:
        good = [(i, image) for i, image, _ in batch if image is not None]
        if not good:
            return {}
        x = torch.stack([image for _, image in good]).to(self.device)  # [B, 1, S, S]
        codes = self.vq.encode(x).cpu().numpy().astype(self.dtype)  # [B, h, w]
        return {i - first: grid for (i, _), grid in zip(good, codes)}

    def _assemble(self, plan: ShardPlan, jobs: list[_ImageJob], codes: dict[int, np.ndarray], errors: dict[int, str]) -> tuple[list[TokenizedStudy], list[dict[str, Any]]]:
        by_study: dict[int, list[int]] = {}
        for j, job in enumerate(jobs):
            by_study.setdefault(job.study, []).append(j)
        studies, rejects = [], []
        for s, study in enumerate(plan.studies):
            paths = study.image_paths(self.root)
            views_ok = [(jobs[j].view, codes[j]) for j in by_study.get(s, []) if j in codes]
            rejects += [{"study_id": study.study_id, "image_path": str(paths[jobs[j].view]), "reason": errors[j]} for j in by_study.get(s, []) if j in errors]
            if not study.images:
                rejects.append({"study_id": study.study_id, "image_path": None, "reason": "the study lists no images"})
            if not views_ok:
                continue
            report = self._report(study)
            studies.append(
                TokenizedStudy(
                    key=study_key(study.study_id),
                    study_id=study.study_id,
                    split=study.split,
                    image_codes=[grid for _, grid in views_ok],
                    views=[study.images[v].view for v, _ in views_ok],
                    report=report,
                    report_ids=np.asarray(encode_report(self.inputs.tokenizer, report), dtype=np.int32),
                    labels=study.labels,
                    meta=study.meta,
                )
            )
        return studies, rejects

    @staticmethod
    def _report(study: Study) -> str:
        """The cleaned full report; composed from the sections when the manifest has no full text."""
        if study.report.text.strip():
            return clean_report(study.report.text)
        return report_text(clean_report(study.report.findings), clean_report(study.report.impression))


def _remove_stale_temporaries(out_dir: Path, plans: Sequence[ShardPlan]) -> None:
    """Delete temporary files a killed run left for these shards (see `radllm.atomic`)."""
    for plan in plans:
        for stale in list(out_dir.glob(f".{plan.name}.*.tmp")) + list((out_dir / PARTS_DIRNAME).glob(f".{plan.name}.json.*.tmp")):
            stale.unlink(missing_ok=True)


def tokenize_shards(
    manifest: str | os.PathLike,
    vq_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = 1000,
    batch_size: int = 32,
    device: str = "auto",
    num_workers: int = 2,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    stop: StopRequest | None = None,
) -> TokenizeSummary:
    """Write this rank's share of the shards (complete ones are skipped); call `write_index` after all ranks.

    Args:
        num_workers: DataLoader processes decoding images while the VQ-GAN encodes (0: inline).
        rank, world_size: this process's share; a single process uses 0 and 1.
        stop: checked after each shard is complete (`radllm.preemption`).

    Raises:
        RadllmError: see `resolve_inputs`; also an output directory made from other inputs.
        JobStopped: `stop` became pending; every shard written is complete and recorded, and the
            same command continues with the next.
    """
    inputs = resolve_inputs(manifest, vq_dir, tokenizer_dir, shard_size)
    out_dir = Path(out_dir)
    mine = rank_shards(plan_shards(inputs.studies, shard_size), rank, world_size)
    _remove_stale_temporaries(out_dir, mine)
    pending = [plan for plan in mine if not _is_complete(out_dir, plan, inputs)]
    summary = TokenizeSummary(0, len(mine) - len(pending), 0, 0)
    if not pending:
        return summary
    encoder = ShardEncoder(inputs, resolve_device(device), batch_size, num_workers)
    total = sum(len(study.images) for plan in pending for study in plan.studies)
    with tqdm(total=total, unit="img", desc=f"tokenize rank {rank}/{world_size}", disable=not progress, position=rank) as bar:
        for plan, studies, rejects in encoder.encode(pending, bar):
            write_shard(out_dir / plan.name, studies)
            record = {
                "shard": plan.name,
                "split": plan.split,
                "index": plan.index,
                "num_samples": len(studies),
                "sha256": sha256_file(out_dir / plan.name),
                "rejects": rejects,
                "fingerprint": inputs.fingerprint,
            }
            atomic.write_json(_record_path(out_dir, plan), record)
            summary.shards_written += 1
            summary.samples_written += len(studies)
            summary.images_rejected += len(rejects)
            if stop is not None and stop.pending and summary.shards_written < len(pending):
                raise JobStopped(f"stopped by {stop.reason} after {summary.shards_written} of this rank's {len(pending)} "
                                 "pending shard(s); every shard written is complete: run the same command again to continue")
    return summary


def write_index(
    manifest: str | os.PathLike,
    vq_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = 1000,
) -> ShardIndex:
    """Merge every shard's record into `rejects.jsonl` and `index.json` (written last, atomically).

    Raises:
        RadllmError: a shard without a record matching the inputs (a rank failed or has not
            finished), naming the first ones.
    """
    inputs = resolve_inputs(manifest, vq_dir, tokenizer_dir, shard_size)
    out_dir = Path(out_dir)
    plans = plan_shards(inputs.studies, shard_size)
    records = [_read_record(out_dir, plan, inputs) for plan in plans]
    incomplete = [plan.name for plan, record in zip(plans, records) if record is None or not (out_dir / plan.name).is_file()]
    if incomplete:
        raise RadllmError(f"{out_dir}: {len(incomplete)} shard(s) not written yet, e.g. {incomplete[:3]}; rerun the tokenization")
    splits: dict[str, list[ShardInfo]] = {}
    rejects: list[dict[str, Any]] = []
    for plan, record in zip(plans, records):
        splits.setdefault(plan.split, []).append(ShardInfo(plan.name, int(record["num_samples"]), str(record["sha256"])))
        rejects += record["rejects"]
    atomic.write_text(out_dir / REJECTS_FILENAME, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rejects))
    index = ShardIndex(splits=splits, visual_vocab=inputs.spec, sources=inputs.sources(), shard_size=shard_size, num_rejects=len(rejects))
    save_index(index, out_dir)
    return index
