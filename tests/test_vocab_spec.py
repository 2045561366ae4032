"""Visual vocab spec: id arithmetic, JSON round trip, and mismatch errors naming every field."""

import json

import pytest

from radllm.errors import RadllmError
from radllm.vocab_spec import VisualVocabSpec, check_compatible, load_spec, save_spec, sha256_file, sha256_files


def _spec(**kw):
    base = dict(codebook_size=16, grid_height=4, grid_width=4, image_size=64, token_offset=102, boi_id=100,
                eoi_id=101, text_vocab_size=100, vocab_size=128, vq_hash="aa", tokenizer_hash="bb")
    base.update(kw)
    return VisualVocabSpec(**base)


def test_code_id_arithmetic():
    spec = _spec()
    assert spec.tokens_per_image == 16
    assert [spec.code_to_id(c) for c in (0, 15)] == [102, 117]
    assert spec.id_to_code(117) == 15 and spec.is_image_id(102) and not spec.is_image_id(118)
    with pytest.raises(ValueError, match="not an image token"):
        spec.id_to_code(101)


def test_round_trip_and_unknown_field(tmp_path):
    spec = _spec()
    save_spec(spec, tmp_path)
    assert load_spec(tmp_path) == spec
    obj = json.loads((tmp_path / "radllm.json").read_text())
    obj["grid"] = 3
    (tmp_path / "radllm.json").write_text(json.dumps(obj))
    with pytest.raises(RadllmError, match=r"unknown visual-vocab field\(s\) \['grid'\]"):
        load_spec(tmp_path)
    with pytest.raises(RadllmError, match="no visual vocab spec"):
        load_spec(tmp_path / "missing")


def test_mismatch_lists_each_field():
    with pytest.raises(RadllmError) as err:
        check_compatible(_spec(), _spec(vq_hash="cc", codebook_size=32), "shards/index.json", "tok/radllm.json")
    text = str(err.value)
    assert "vq_hash: 'aa' (shards/index.json) vs 'cc' (tok/radllm.json)" in text and "codebook_size" in text
    check_compatible(_spec(), _spec(), "a", "b")


def test_hashes(tmp_path):
    import hashlib

    (tmp_path / "a").write_bytes(b"hello")
    (tmp_path / "b").write_bytes(b"world")
    assert sha256_file(tmp_path / "a") == hashlib.sha256(b"hello").hexdigest()
    assert sha256_files([tmp_path / "b", tmp_path / "a"]) == sha256_files([tmp_path / "a", tmp_path / "b"])
