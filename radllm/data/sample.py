"""The tokenized-study sample: the one schema shard writers and readers share.

In a shard a sample is a group of tar members with a common key (the WebDataset convention):

    {key}.codes_0.npy     int16/int32 array [grid_h, grid_w]: VQ codes of view 0 (one per view)
    {key}.report.txt      report text (cleaned, UTF-8)
    {key}.report_ids.npy  int32 [n] token ids of the report text, no special tokens
    {key}.labels.json     the 14 CheXpert labels (1 / 0 / -1 / null)
    {key}.meta.json       {"study_id", "split", "views": [...], ...free-form study metadata}

Only these members exist; `decode_study` reads them with safe decoders (npy with
`allow_pickle=False`, json, utf-8 text) and refuses any other member name (`.pickle`, `.pyd`,
`.pth`, ...), because the generic WebDataset decoders would unpickle such members and a shard is
untrusted input. Codes are int16 while the codebook fits (K <= 32767) and int32 otherwise
(`codes_dtype`), which halves shard size for every realistic codebook.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radllm.labels import Labels, empty_labels, validate_labels

REPORT_MEMBER = "report.txt"
REPORT_IDS_MEMBER = "report_ids.npy"
LABELS_MEMBER = "labels.json"
META_MEMBER = "meta.json"
CODES_MEMBER = re.compile(r"^codes_(\d+)\.npy$")
REQUIRED_MEMBERS = (REPORT_MEMBER, REPORT_IDS_MEMBER, LABELS_MEMBER, META_MEMBER)
# Keys of meta.json that hold TokenizedStudy fields; the rest is the study's free-form `meta`.
RESERVED_META_KEYS = ("study_id", "split", "views")
CODE_DTYPES = (np.dtype(np.int16), np.dtype(np.int32))


@dataclass
class TokenizedStudy:
    """One study after VQ encoding and text tokenization."""

    key: str  # WebDataset key (safe form of the study id: no dots or slashes), see `study_key`
    study_id: str
    split: str
    image_codes: list[np.ndarray]  # one integer array [grid_h, grid_w] per view, order = views
    views: list[str]
    report: str
    report_ids: np.ndarray  # int32 [n] token ids of `report` without special tokens
    labels: Labels = field(default_factory=empty_labels)
    meta: dict[str, Any] = field(default_factory=dict)


class CorruptSample(ValueError):
    """A shard sample that cannot be decoded into a `TokenizedStudy`; readers skip and count it."""


class UnsafeMember(CorruptSample):
    """A member whose name is not part of the schema (it might need an unsafe decoder such as pickle)."""


def codes_dtype(codebook_size: int) -> np.dtype:
    """Smallest schema dtype that holds codes 0..codebook_size-1."""
    return np.dtype(np.int16) if codebook_size <= np.iinfo(np.int16).max else np.dtype(np.int32)


def study_key(study_id: str) -> str:
    """WebDataset key for a study id.

    WebDataset splits a member name at the first dot after the last slash, so keys may hold
    neither. Ids made only of letters, digits, `_` and `-` are used as they are; any other id is
    sanitised and suffixed with a hash of the original, so two ids never share a key.
    """
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", study_id)
    if safe == study_id and safe:
        return safe
    return f"{safe}-{hashlib.sha1(study_id.encode('utf-8')).hexdigest()[:10]}"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")


def encode_study(study: TokenizedStudy) -> dict[str, bytes]:
    """Member name suffix (after `{key}.`) -> bytes for one study.

    Raises:
        ValueError: if the study breaks the schema (a key with dots/slashes, codes that are not
            2-D int16/int32, one code grid per view, or `meta` using a reserved key).
    """
    if not study.key or "." in study.key or "/" in study.key:
        raise ValueError(f"study {study.study_id!r}: key {study.key!r} must be non-empty without '.' or '/' (use study_key)")
    if len(study.image_codes) != len(study.views):
        raise ValueError(f"study {study.study_id!r}: {len(study.image_codes)} code grids for {len(study.views)} views")
    clash = set(study.meta) & set(RESERVED_META_KEYS)
    if clash:
        raise ValueError(f"study {study.study_id!r}: meta uses reserved key(s) {sorted(clash)}")
    members: dict[str, bytes] = {}
    for index, codes in enumerate(study.image_codes):
        codes = np.asarray(codes)
        if codes.dtype not in CODE_DTYPES or codes.ndim != 2:
            raise ValueError(f"study {study.study_id!r}: view {index} codes are {codes.dtype} {codes.shape}, expected 2-D int16/int32")
        members[f"codes_{index}.npy"] = _npy_bytes(codes)
    members[REPORT_MEMBER] = study.report.encode("utf-8")
    members[REPORT_IDS_MEMBER] = _npy_bytes(np.asarray(study.report_ids, dtype=np.int32).reshape(-1))
    members[LABELS_MEMBER] = _json_bytes(validate_labels(study.labels, f"study {study.study_id!r} labels"))
    members[META_MEMBER] = _json_bytes({"study_id": study.study_id, "split": study.split, "views": list(study.views), **study.meta})
    return members


def _load_npy(data: bytes, name: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # object arrays raise ValueError without pickle
        raise CorruptSample(f"{name}: not a plain npy array ({err})") from err
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iu":
        raise CorruptSample(f"{name}: expected an integer array, got {getattr(array, 'dtype', type(array).__name__)}")
    return array


def _load_json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptSample(f"{name}: not valid UTF-8 JSON ({err})") from err


def decode_study(key: str, members: Mapping[str, bytes]) -> TokenizedStudy:
    """Rebuild a study from its member suffixes -> bytes, using only safe decoders.

    Raises:
        UnsafeMember: a member name outside the schema (nothing of the sample is decoded).
        CorruptSample: a missing member, malformed npy/json/text, or inconsistent views.
    """
    unknown = sorted(name for name in members if name not in REQUIRED_MEMBERS and not CODES_MEMBER.match(name))
    if unknown:
        raise UnsafeMember(f"sample {key!r}: refusing member(s) {unknown}: only codes_N.npy, {', '.join(REQUIRED_MEMBERS)} are allowed")
    missing = [name for name in REQUIRED_MEMBERS if name not in members]
    if missing:
        raise CorruptSample(f"sample {key!r}: missing member(s) {missing}")
    meta = _load_json(members[META_MEMBER], f"{key}.{META_MEMBER}")
    if not isinstance(meta, dict) or any(k not in meta for k in RESERVED_META_KEYS) or not isinstance(meta["views"], list):
        raise CorruptSample(f"sample {key!r}: {META_MEMBER} must be an object with study_id, split and a views list")
    views = [str(v) for v in meta["views"]]
    indices = sorted(int(CODES_MEMBER.match(name).group(1)) for name in members if CODES_MEMBER.match(name))
    if indices != list(range(len(views))):
        raise CorruptSample(f"sample {key!r}: code members for views {indices}, expected 0..{len(views) - 1} for views {views}")
    codes = []
    for index in indices:
        name = f"codes_{index}.npy"
        array = _load_npy(members[name], f"{key}.{name}")
        if array.ndim != 2:
            raise CorruptSample(f"sample {key!r}: {name} has shape {array.shape}, expected [grid_h, grid_w]")
        codes.append(array)
    report_ids = _load_npy(members[REPORT_IDS_MEMBER], f"{key}.{REPORT_IDS_MEMBER}")
    if report_ids.ndim != 1:
        raise CorruptSample(f"sample {key!r}: {REPORT_IDS_MEMBER} has shape {report_ids.shape}, expected [n]")
    try:
        report = members[REPORT_MEMBER].decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptSample(f"sample {key!r}: {REPORT_MEMBER} is not UTF-8 ({err})") from err
    raw_labels = _load_json(members[LABELS_MEMBER], f"{key}.{LABELS_MEMBER}")
    try:
        labels = validate_labels(raw_labels if isinstance(raw_labels, dict) else {"<not an object>": raw_labels}, f"{key}.{LABELS_MEMBER}")
    except ValueError as err:
        raise CorruptSample(str(err)) from err
    return TokenizedStudy(
        key=key,
        study_id=str(meta["study_id"]),
        split=str(meta["split"]),
        image_codes=codes,
        views=views,
        report=report,
        report_ids=report_ids.astype(np.int32, copy=False),
        labels=labels,
        meta={k: v for k, v in meta.items() if k not in RESERVED_META_KEYS},
    )
