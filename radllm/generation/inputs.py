"""What generation reads: studies from a manifest, tokenized shards, an image folder or report text.

Every source becomes the same list of `StudyInput`s, in a fixed order (the order of the output
file): a manifest's line order, the shards' index order, a folder's sorted relative paths, a text
file's line order. Images stay paths until a batch needs them (`radllm.generation.images`
encodes them with the VQ-GAN), so listing a large source is cheap and a resumed run never
re-encodes studies it already has.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radllm.data.split import iter_split
from radllm.data.shards import INDEX_FILENAME, ShardIndex, load_index
from radllm.errors import RadllmError
from radllm.imaging import is_supported_image
from radllm.manifest import looks_like_manifest, manifest_root, read_manifest
from radllm.vocab_spec import VisualVocabSpec


@dataclass
class StudyInput:
    """One study to generate for. Exactly one of `codes` / `image_paths` holds its images (or neither, for text-only inputs)."""

    study_id: str
    views: list[str] = field(default_factory=list)
    image_paths: list[Path] | None = None  # images to VQ-encode on the fly
    codes: list[np.ndarray] | None = None  # [grid_h, grid_w] per view, already encoded (shards)
    report: str = ""
    image_from: str | None = None  # --shuffle-images: the study whose images these are (radllm.generation.shuffle)

    @property
    def has_images(self) -> bool:
        return bool(self.image_paths) or bool(self.codes)


def manifest_inputs(path: str | os.PathLike, split: str | None = None) -> list[StudyInput]:
    """Studies of a manifest (all splits when `split` is None), image paths resolved."""
    root = manifest_root(path)
    return [
        StudyInput(study.study_id, [ref.view for ref in study.images], study.image_paths(root), None, study.report.text)
        for study in read_manifest(path)
        if split is None or study.split == split
    ]


def shard_inputs(directory: str | os.PathLike, spec: VisualVocabSpec, split: str | None = None) -> list[StudyInput]:
    """Studies of a shards directory (all splits in index order when `split` is None).

    The index's visual vocab spec must equal the model's. Samples are read in order, without
    shuffling; a key already seen (the reader makes up for corrupt samples by re-reading) is
    skipped, so each study appears once.
    """
    return list(iter_shard_inputs(directory, spec, split))


def iter_shard_inputs(
    directory: str | os.PathLike, spec: VisualVocabSpec, split: str | None = None, index: ShardIndex | None = None
) -> Iterator[StudyInput]:
    """`shard_inputs` one study at a time, so a caller that needs the first few reads only those
    (`index`: `directory`'s index, when the caller has read it already).

    Raises:
        RadllmError: once a split has been read through, if any of its samples were corrupt or missing.
    """
    index = index if index is not None else load_index(directory)
    splits = [split] if split is not None else list(index.splits)
    for name in splits:
        for sample in iter_split(directory, name, spec, index):
            yield StudyInput(sample.study_id, list(sample.views), None, list(sample.image_codes), sample.report)


def folder_inputs(directory: str | os.PathLike) -> list[StudyInput]:
    """One single-view study per supported image under `directory` (recursive, sorted).

    The study id is the file's path relative to `directory` without its suffix, so files with
    the same name in different subfolders stay distinct.
    """
    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and is_supported_image(p))
    if not files:
        raise RadllmError(f"{directory}: no PNG/JPEG/DICOM images found")
    return [StudyInput(f.relative_to(directory).with_suffix("").as_posix(), ["UNKNOWN"], [f]) for f in files]


def report_text_inputs(path: str | os.PathLike) -> list[StudyInput]:
    """One text-only study per non-empty line of a text file; study id `{file stem}-{line number}`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RadllmError(f"{path}: cannot read report text file ({err})") from err
    studies = [StudyInput(f"{path.stem}-{n}", report=line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not studies:
        raise RadllmError(f"{path}: no reports (expected one report per line)")
    return studies


def load_inputs(
    path: str | os.PathLike, spec: VisualVocabSpec, split: str | None = None, need_images: bool = True
) -> list[StudyInput]:
    """Studies from any supported source, detected from `path`.

    - a directory with `index.json`: tokenized shards;
    - another directory: a folder of PNG/JPEG/DICOM images (one study per image);
    - a manifest (`.jsonl` of study objects);
    - any other file (only when `need_images` is False, i.e. image generation): one report per line.

    Raises:
        RadllmError: a missing path, a source that cannot give what the task needs (reports
            without images, images without reports), or an empty selection.
    """
    path = Path(path)
    if path.is_dir():
        studies = shard_inputs(path, spec, split) if (path / INDEX_FILENAME).is_file() else folder_inputs(path)
    elif not path.is_file():
        raise RadllmError(f"--input {path}: no such file or directory")
    elif path.suffix == ".jsonl" and looks_like_manifest(path, if_unparsable=True):
        studies = manifest_inputs(path, split)
    elif need_images:
        raise RadllmError(f"--input {path}: expected a manifest (.jsonl), a shards directory or a folder of images")
    else:
        studies = report_text_inputs(path)
    if not studies:
        raise RadllmError(f"--input {path}: no studies{f' in split {split!r}' if split else ''}")
    if need_images:
        missing = [s.study_id for s in studies if not s.has_images]
        if missing:
            raise RadllmError(f"--input {path}: {len(missing)} studies without images, e.g. {missing[:3]}")
    return studies

