"""Shard files and their index: tar writing/reading of samples, and the `index.json` schema.

A shard is a plain, uncompressed tar that `tar -tf` lists and `webdataset.WebDataset(url)` reads;
members are named `{key}.{member}` (see `radllm.data.sample`). Writing uses webdataset's
`TarWriter` with fixed member mtime/owner/mode, so a shard's bytes depend only on its samples: a
resumed tokenization reproduces skipped shards bit for bit. Reading uses webdataset's streaming
`tar_file_iterator` but groups members into samples here rather than with `group_by_keys`,
because the streaming reader must count sample *positions* exactly (a truncated or corrupt
sample still occupies its position) and must see duplicate or foreign member names instead of
having them lower-cased, merged or raised through a handler.

`index.json` lists every shard of every split with its sample count and sha256, the visual vocab
spec the codes were made for, and the hashes of the manifest, VQ weights and tokenizer.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import webdataset as wds
from webdataset.handlers import reraise_exception
from webdataset.tariterators import base_plus_ext, tar_file_iterator

from radllm import atomic
from radllm.data.sample import TokenizedStudy, encode_study
from radllm.errors import RadllmError
from radllm.jsonl import read_json_file
from radllm.manifest import SPLITS
from radllm.vocab_spec import VisualVocabSpec, sha256_file

INDEX_FILENAME = "index.json"
INDEX_FORMAT = "radllm-shards"
INDEX_VERSION = 1
# Fixed tar header fields: a shard's bytes are a function of its samples only.
_TAR_MTIME = 0  # an int: a float mtime makes tarfile add a 1 KiB PAX header to every member
_TAR_OWNER = "radllm"
_TAR_MODE = 0o444


def shard_name(split: str, index: int) -> str:
    """File name of shard `index` of `split`: `{split}-{index:06d}.tar`.

    The index counts shards of the split in manifest order and does not depend on which rank
    wrote the shard, so names are unique across ranks and stable across world sizes.
    """
    return f"{split}-{index:06d}.tar"


class ShardReadError(Exception):
    """A shard that ends or breaks mid-stream (truncated download, disk error, not a tar)."""


@dataclass
class RawSample:
    """The members of one sample as stored: suffix after `{key}.` -> bytes, not yet decoded."""

    key: str
    members: dict[str, bytes] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)  # member suffixes that appeared twice


def write_shard(path: str | os.PathLike, studies: Iterable[TokenizedStudy]) -> int:
    """Atomically write `studies` (in order) as one shard; returns the number of samples."""
    return write_raw_shard(path, ((study.key, encode_study(study)) for study in studies))


def write_raw_shard(path: str | os.PathLike, samples: Iterable[tuple[str, dict[str, bytes]]]) -> int:
    """Atomically write already-encoded samples `(key, {suffix: bytes})` as one shard."""
    count = 0
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            # encoder=False: members are bytes already.
            with wds.TarWriter(fh, encoder=False, mtime=_TAR_MTIME, user=_TAR_OWNER, group=_TAR_OWNER, mode=_TAR_MODE) as writer:
                for key, members in samples:
                    writer.write({"__key__": key, **members})
                    count += 1
    return count


def iter_raw_samples(stream: BinaryIO, name: str = "shard") -> Iterator[RawSample]:
    """Group the members of a tar stream into samples, in file order.

    Consecutive members sharing a key form one sample. A member name without an extension is
    returned as its own sample with the suffix "" (the decoder refuses it).

    Raises:
        ShardReadError: the tar is truncated or unreadable; samples before the break were yielded
            and the partially read sample is dropped.
    """
    current: RawSample | None = None
    try:
        for member in tar_file_iterator(stream, handler=reraise_exception):
            key, suffix = base_plus_ext(member["fname"])
            if key is None:
                key, suffix = member["fname"], ""
            if current is not None and key != current.key:
                yield current
                current = None
            if current is None:
                current = RawSample(key)
            if suffix in current.members:
                current.duplicates.append(suffix)
            current.members[suffix] = member["data"]
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardReadError(f"{name}: unreadable tar data ({err})") from err
    if current is not None:
        yield current


@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed in `index.json`."""

    name: str  # file name inside the shards directory
    num_samples: int
    sha256: str


def shard_file_name(name: Any, where: str) -> str:
    """`name` if it is a plain `.tar` file name, so a listed shard can only be a file inside the
    shards directory (an index naming `../../outside.tar` or `/etc/x.tar` is refused)."""
    if not isinstance(name, str) or not name.endswith(".tar") or name.startswith(".") or name != Path(name).name or "\\" in name:
        raise RadllmError(f"{where}: shard name {name!r}; expected a plain file name ending in .tar inside the shards directory")
    return name


@dataclass
class ShardIndex:
    """Contents of `index.json`: the shards of each split and the provenance of their samples."""

    splits: dict[str, list[ShardInfo]]  # split -> shards in index order
    visual_vocab: VisualVocabSpec
    sources: dict[str, dict[str, str]]  # "manifest" / "vq" / "tokenizer" -> {"path", "sha256"}
    shard_size: int
    num_rejects: int

    def shards(self, split: str) -> list[ShardInfo]:
        """Shards of `split`; a split absent from the index is an error naming the ones present."""
        if split not in self.splits:
            raise RadllmError(f"{INDEX_FILENAME}: no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def num_samples(self, split: str) -> int:
        return sum(shard.num_samples for shard in self.shards(split))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "splits": {
                split: {
                    "num_samples": sum(s.num_samples for s in shards),
                    "shards": [{"name": s.name, "num_samples": s.num_samples, "sha256": s.sha256} for s in shards],
                }
                for split, shards in self.splits.items()
            },
            "visual_vocab": self.visual_vocab.to_json(),
            "sources": self.sources,
            "shard_size": self.shard_size,
            "num_rejects": self.num_rejects,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "ShardIndex":
        if not isinstance(obj, dict) or obj.get("format") != INDEX_FORMAT:
            raise RadllmError(f"{where}: not a radllm shard index (expected \"format\": {INDEX_FORMAT!r})")
        if obj.get("version") != INDEX_VERSION:
            raise RadllmError(f"{where}: shard index version {obj.get('version')!r}, this radllm reads {INDEX_VERSION}")
        try:
            splits = {}
            for split, entry in obj["splits"].items():
                if split not in SPLITS:
                    raise RadllmError(f"{where}: unknown split {split!r}, expected one of {SPLITS}")
                shards = [ShardInfo(shard_file_name(s["name"], where), int(s["num_samples"]), str(s["sha256"])) for s in entry["shards"]]
                if sum(s.num_samples for s in shards) != int(entry["num_samples"]):
                    raise RadllmError(f"{where}: split {split!r} num_samples {entry['num_samples']} != sum over its shards")
                splits[split] = shards
            return cls(
                splits=splits,
                visual_vocab=VisualVocabSpec.from_json(obj["visual_vocab"], f"{where} visual_vocab"),
                sources={str(k): dict(v) for k, v in obj["sources"].items()},
                shard_size=int(obj["shard_size"]),
                num_rejects=int(obj["num_rejects"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RadllmError(f"{where}: malformed shard index ({type(err).__name__}: {err})") from err


def save_index(index: ShardIndex, directory: str | os.PathLike) -> Path:
    """Atomically write `index.json` into `directory`; returns its path."""
    path = Path(directory) / INDEX_FILENAME
    atomic.write_json(path, index.to_json())
    return path


def write_split_shards(
    directory: str | os.PathLike,
    splits: dict[str, Sequence[Sequence[TokenizedStudy]]],
    visual_vocab: VisualVocabSpec,
    sources: dict[str, dict[str, str]] | None = None,
) -> ShardIndex:
    """Write already-tokenized studies as shards plus `index.json` (split -> list of shards' studies).

    The tokenization pipeline builds its index from per-shard records instead; this is for
    studies that exist in memory (synthetic data for tests and benchmarks, re-sharding).
    """
    directory = Path(directory)
    listed: dict[str, list[ShardInfo]] = {}
    for split, shards in splits.items():
        for i, studies in enumerate(shards):
            name = shard_name(split, i)
            count = write_shard(directory / name, studies)
            listed.setdefault(split, []).append(ShardInfo(name, count, sha256_file(directory / name)))
    index = ShardIndex(listed, visual_vocab, sources or {}, max((len(s) for shards in splits.values() for s in shards), default=0), 0)
    save_index(index, directory)
    return index


def load_index(directory: str | os.PathLike) -> ShardIndex:
    """Read `index.json` from a shards directory and check that every listed shard file exists."""
    directory = Path(directory)
    path = directory / INDEX_FILENAME
    if not path.is_file():
        raise RadllmError(f"{path}: no shard index; run `radllm tokenize` to build {directory}")
    index = ShardIndex.from_json(read_json_file(path), str(path))
    missing = [s.name for shards in index.splits.values() for s in shards if not (directory / s.name).is_file()]
    if missing:
        raise RadllmError(f"{path}: {len(missing)} listed shard file(s) missing in {directory}, e.g. {missing[:3]}")
    return index


def verify_shards(directory: str | os.PathLike, progress: bool = False) -> tuple[int, list[str]]:
    """Check every shard `index.json` lists against its recorded sha256 and sample count.

    Training reads shards as a stream and trusts their bytes (each sample is still decoded
    defensively); a copy truncated by a full disk, a shard swapped by hand, or a file changed
    after tokenizing shows up here before a week of GPUs is spent on it.

    Returns:
        (shards checked, one line per problem naming the shard: wrong hash, wrong count, unreadable tar).
    """
    from tqdm import tqdm

    directory = Path(directory)
    index = load_index(directory)
    listed = [info for shards in index.splits.values() for info in shards]
    problems = []
    for info in tqdm(listed, desc="verify-shards", unit="shard", disable=not progress):
        path = directory / info.name
        actual = sha256_file(path)
        if actual != info.sha256:
            problems.append(f"{path}: sha256 {actual} differs from the index's {info.sha256}")
            continue
        try:
            with open(path, "rb") as fh:
                count = sum(1 for _ in iter_raw_samples(fh, str(path)))
        except ShardReadError as err:
            problems.append(str(err))
            continue
        if count != info.num_samples:
            problems.append(f"{path}: {count} samples, the index lists {info.num_samples}")
    return len(listed), problems
