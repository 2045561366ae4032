"""Visual vocabulary: extending the four LLM tokenizer families and a SentencePiece one.

References used: the base tokenizer itself (text ids must not change), the `sentencepiece` library
(the HF wrapper must encode exactly like it), hashlib over the files, hand-computed id layouts,
and token strings assembled by hand (`"<boi><img_3>…<eoi>"` must encode to the computed ids).
"""

import hashlib
import json
import shutil

import numpy as np
import pytest
import sentencepiece as spm
from tokenizer_fixtures import CORPUS, FAMILIES, FAMILY_CLASSES, make_base_tokenizer, make_visual_tokenizer, make_vq_dir
from transformers import AutoTokenizer, LlamaTokenizer

from radllm.cli import main
from radllm.errors import RadllmError
from radllm.manifest import ImageRef, Report, Study, write_manifest
from radllm.vocab import (
    decode_report,
    encode_report,
    image_codes_from_ids,
    image_token_ids,
    load_tokenizer,
    verify_vq,
)
from radllm.vocab.extend import PAD_TOKEN, build_tokenizer, extend_tokenizer, padded_vocab_size, tokenizer_files_hash
from radllm.vocab.load import load_hf_tokenizer
from radllm.vocab.sentencepiece_tokenizer import (
    build_sentencepiece_tokenizer,
    report_texts,
    sentencepiece_to_hf,
    train_sentencepiece,
)
from radllm.vocab_spec import BOI_TOKEN, EOI_TOKEN, image_token, sha256_files

K = 40  # codebook size: 2 + 40 new tokens do not land on a multiple of 64 by accident
SP_VOCAB = 400
KINDS = [*FAMILIES, "sentencepiece"]

REPORTS = [
    "FINDINGS: Heart size is 15.5 cm × 12 cm; café-au-lait spots noted (right > left).",
    "IMPRESSION:\n1. No acute disease.\n2. Stable 4-mm nodule, unchanged since 2019!",
    "Lines/tubes: ETT 3.2 cm above the carina, NG tube — tip in stomach. Pleural effusion? No.",
    "Multiple  spaces\tand tabs, \"quotes\" and 'apostrophes'; 100% résolution, µ and ±0.5.",
]


def _manifest(path):
    """Reports of CORPUS as train studies plus one test-only study that must not train SentencePiece."""
    studies = [Study(f"s{i}", [ImageRef("img.png", "PA")], Report(text=text)) for i, text in enumerate(CORPUS * 2)]
    studies.append(Study("held-out", [ImageRef("img.png", "PA")], Report(text="ZQXJ held out only"), split="test"))
    write_manifest(path, studies)
    return path


@pytest.fixture(scope="module")
def vq_dir(tmp_path_factory):
    return make_vq_dir(tmp_path_factory.mktemp("vq") / "vq", codebook_size=K)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return _manifest(tmp_path_factory.mktemp("manifest") / "manifest.jsonl")


@pytest.fixture(scope="module", params=KINDS)
def built(request, tmp_path_factory, vq_dir, manifest):
    """(kind, base_dir or None, tok_dir) for every family and the SentencePiece path."""
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    if kind == "sentencepiece":
        build_sentencepiece_tokenizer(manifest, vq_dir, root / "tok", vocab_size=SP_VOCAB)
        return kind, None, root / "tok"
    base = make_base_tokenizer(root / "base", kind)
    build_tokenizer(base, vq_dir, root / "tok")
    return kind, base, root / "tok"


def test_reports_round_trip_and_stay_text(built):
    _, _, tok_dir = built
    tokenizer, spec = load_tokenizer(tok_dir)
    for text in REPORTS:
        ids = encode_report(tokenizer, text)
        assert decode_report(tokenizer, ids) == text
        assert max(ids) < spec.text_vocab_size  # no pad/visual ids from report text


@pytest.mark.parametrize("built", list(FAMILIES), indirect=True)
def test_text_ids_unchanged_by_extension(built):
    kind, base_dir, tok_dir = built
    base = AutoTokenizer.from_pretrained(base_dir)
    tokenizer, _ = load_tokenizer(tok_dir)
    for text in REPORTS:
        assert tokenizer.encode(text) == base.encode(text)  # bos/eos behaviour of the family kept too


def test_visual_tokens_are_single_contiguous_ids(built):
    _, _, tok_dir = built
    tokenizer, spec = load_tokenizer(tok_dir)
    assert [tokenizer.convert_tokens_to_ids(image_token(k)) for k in range(K)] == list(range(spec.token_offset, spec.token_offset + K))
    assert tokenizer.encode("<img_5>", add_special_tokens=False) == [spec.token_offset + 5]
    assert tokenizer.encode("<img_12>", add_special_tokens=False) == [spec.token_offset + 12]
    codes = np.random.default_rng(0).integers(0, K, size=(spec.grid_height, spec.grid_width))
    text = BOI_TOKEN + "".join(image_token(int(c)) for c in codes.reshape(-1)) + EOI_TOKEN
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == image_token_ids(spec, codes)
    assert tokenizer.decode(ids) == text  # <boi>/<eoi> survive decoding
    assert decode_report(tokenizer, ids) == ""  # and are dropped from report text
    np.testing.assert_array_equal(image_codes_from_ids(spec, ids), codes)
    # Report text that merely looks like a visual token stays text.
    assert decode_report(tokenizer, encode_report(tokenizer, "see <img_5> and <boi>")) == "see <img_5> and <boi>"


def test_id_layout_padding_and_provenance(built, vq_dir):
    kind, base_dir, tok_dir = built
    tokenizer, spec = load_tokenizer(tok_dir)
    base_has_pad = kind in ("qwen2", "sentencepiece")
    assert spec.boi_id == spec.text_vocab_size + (0 if base_has_pad else 1)
    assert (spec.eoi_id, spec.token_offset) == (spec.boi_id + 1, spec.boi_id + 2)
    assert len(tokenizer) == spec.token_offset + K
    assert spec.vocab_size % 64 == 0 and 0 <= spec.vocab_size - len(tokenizer) < 64
    assert (spec.codebook_size, spec.grid_height, spec.grid_width, spec.image_size) == (K, 8, 8, 32)
    assert spec.vq_hash == hashlib.sha256((vq_dir / "model.safetensors").read_bytes()).hexdigest()
    if base_dir is not None:
        assert spec.tokenizer_hash == sha256_files(list(base_dir.iterdir()))
        assert spec.text_vocab_size == len(AutoTokenizer.from_pretrained(base_dir))
    if base_has_pad:
        assert tokenizer.pad_token_id < spec.text_vocab_size
    else:
        assert (tokenizer.pad_token, tokenizer.pad_token_id) == (PAD_TOKEN, spec.text_vocab_size)
        assert tokenizer.pad_token_id != tokenizer.eos_token_id
    # nothing but the final directory is left next to it (atomic write, staging removed)
    assert sorted(p.name for p in tok_dir.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("built", list(FAMILIES), indirect=True)
def test_autotokenizer_reload_matches_in_memory_extension(built):
    kind, base_dir, tok_dir = built
    reloaded = AutoTokenizer.from_pretrained(tok_dir)
    assert type(reloaded) is FAMILY_CLASSES[kind]
    fresh = AutoTokenizer.from_pretrained(base_dir)
    spec = extend_tokenizer(fresh, codebook_size=K, grid_height=8, grid_width=8, image_size=32, vq_hash="", tokenizer_hash="")
    _, saved_spec = load_tokenizer(tok_dir)
    assert (spec.token_offset, spec.boi_id, spec.vocab_size) == (saved_spec.token_offset, saved_spec.boi_id, saved_spec.vocab_size)
    assert reloaded.get_vocab() == fresh.get_vocab()
    assert (reloaded.bos_token, reloaded.eos_token, reloaded.unk_token, reloaded.pad_token) == (
        fresh.bos_token, fresh.eos_token, fresh.unk_token, fresh.pad_token)
    for text in [*REPORTS, "<boi><img_3><eoi> text"]:
        assert reloaded.encode(text) == fresh.encode(text)


def test_sentencepiece_wrapper_encodes_like_sentencepiece():
    proto = train_sentencepiece(CORPUS, SP_VOCAB)
    reference = spm.SentencePieceProcessor(model_proto=proto)
    tokenizer = sentencepiece_to_hf(proto)
    assert len(tokenizer) == reference.get_piece_size()
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<pad>")] == [0, 1, 2, 3]
    for text in [*REPORTS, *CORPUS, "日本語 ☃ unseen characters"]:
        assert tokenizer.encode(text, add_special_tokens=False) == reference.encode(text)
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == reference.decode(reference.encode(text)) == text
    assert tokenizer.encode("Heart")[0] == tokenizer.bos_token_id


def test_sentencepiece_reads_train_split_only(manifest, tmp_path):
    texts = report_texts(manifest)
    assert len(texts) == 2 * len(CORPUS) and "ZQXJ held out only" not in texts
    assert report_texts(manifest, splits=("test",)) == ["ZQXJ held out only"]
    with pytest.raises(RadllmError, match=r"no non-empty report text in split\(s\) \['val'\]"):
        report_texts(manifest, splits=("val",))
    with pytest.raises(RadllmError, match="vocab size 50 failed"):
        train_sentencepiece(CORPUS, 50)


def test_edited_spec_is_rejected_naming_file_and_field(built, tmp_path):
    _, _, tok_dir = built
    spec_json = json.loads((tok_dir / "radllm.json").read_text())
    for field, delta, message in [
        ("token_offset", 1, "token_offset"),
        ("boi_id", 5, "boi_id"),
        ("codebook_size", -1, "codebook_size"),
        ("codebook_size", 1, "codebook_size"),
        ("vocab_size", -64, "vocab_size"),
        ("text_vocab_size", 10, "text_vocab_size"),
    ]:
        copy = tmp_path / f"{field}{delta}"
        shutil.copytree(tok_dir, copy)
        (copy / "radllm.json").write_text(json.dumps(spec_json | {field: spec_json[field] + delta}))
        with pytest.raises(RadllmError, match=rf"{copy / 'radllm.json'} does not match its tokenizer:\n.*{message}"):
            load_tokenizer(copy)


def test_tokenizer_from_other_vq_is_rejected(tmp_path, vq_dir):
    other_vq = make_vq_dir(tmp_path / "vq24", codebook_size=24)
    base = make_base_tokenizer(tmp_path / "base", "llama")
    build_tokenizer(base, vq_dir, tmp_path / "tok40")
    build_tokenizer(base, other_vq, tmp_path / "tok24")
    shutil.copy(tmp_path / "tok24" / "radllm.json", tmp_path / "tok40" / "radllm.json")
    with pytest.raises(RadllmError, match=r"codebook_size = 24, but .* also contain <img_24>"):
        load_tokenizer(tmp_path / "tok40")

    _, spec = load_tokenizer(tmp_path / "tok24")
    verify_vq(spec, other_vq, "tok24")
    with pytest.raises(RadllmError, match=r"different VQ-GAN(.|\n)*codebook_size: 24 \(tok24\) vs 40(.|\n)*vq_hash"):
        verify_vq(spec, vq_dir, "tok24")
    same_shape_other_weights = make_vq_dir(tmp_path / "vq24b", codebook_size=24, seed=1)
    with pytest.raises(RadllmError, match=r"\n  vq_hash: '[0-9a-f]{64}' \(tok24\) vs '[0-9a-f]{64}'") as err:
        verify_vq(spec, same_shape_other_weights, "tok24")
    assert "codebook_size" not in str(err.value)


def test_build_refuses_extended_base_and_existing_output(tmp_path, vq_dir):
    base = make_base_tokenizer(tmp_path / "base", "qwen2")
    first = build_tokenizer(base, vq_dir, tmp_path / "tok")
    files = {p.name: p.read_bytes() for p in (tmp_path / "tok").iterdir()}
    with pytest.raises(RadllmError, match="already exists"):
        build_tokenizer(base, vq_dir, tmp_path / "tok")
    assert build_tokenizer(base, vq_dir, tmp_path / "tok", overwrite=True) == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "tok").iterdir()} == files  # deterministic
    with pytest.raises(RadllmError, match=r"already contains \['<boi>'"):
        build_tokenizer(tmp_path / "tok", vq_dir, tmp_path / "tok2")
    with pytest.raises(RadllmError, match="tokenizer directory .*nowhere does not exist"):
        load_hf_tokenizer(tmp_path / "nowhere")
    (tmp_path / "not-a-tokenizer").mkdir()
    with pytest.raises(RadllmError, match="not-a-tokenizer: cannot load a Hugging Face tokenizer"):
        load_hf_tokenizer(tmp_path / "not-a-tokenizer")


def test_tokenizer_hash_ignores_model_weights(tmp_path):
    base = make_base_tokenizer(tmp_path / "base", "gpt_neox")
    before = tokenizer_files_hash(base)
    (base / "model.safetensors").write_bytes(b"weights are not part of the tokenizer")
    assert tokenizer_files_hash(base) == before
    (base / "tokenizer_config.json").write_text((base / "tokenizer_config.json").read_text() + " ")
    assert tokenizer_files_hash(base) != before
    with pytest.raises(RadllmError, match="no tokenizer files"):
        tokenizer_files_hash(tmp_path)


def test_padded_vocab_size_by_hand():
    assert [padded_vocab_size(n) for n in (1, 63, 64, 65, 128, 32002)] == [64, 64, 64, 128, 128, 32064]
    assert padded_vocab_size(100, 8) == 104
    with pytest.raises(RadllmError, match="pad multiple must be >= 1, got 0"):
        padded_vocab_size(100, 0)


def test_image_codec_errors(built):
    _, _, tok_dir = built
    _, spec = load_tokenizer(tok_dir)
    flat = list(range(spec.tokens_per_image))
    codes = np.array([c % K for c in flat]).reshape(8, 8)
    assert image_token_ids(spec, codes.reshape(-1)) == image_token_ids(spec, codes)
    with pytest.raises(RadllmError, match=r"shape \(4, 16\) do not fit the 8x8 grid"):
        image_token_ids(spec, codes.reshape(4, 16))
    with pytest.raises(RadllmError, match=f"image code {K} is outside the codebook"):
        image_token_ids(spec, np.full((8, 8), K))
    ids = image_token_ids(spec, codes)
    with pytest.raises(RadllmError, match="expected <boi>, 64 image tokens, <eoi>"):
        image_codes_from_ids(spec, ids[:-1])
    with pytest.raises(RadllmError, match=f"non-image token id between <boi> and <eoi>: {spec.eoi_id}"):
        image_codes_from_ids(spec, [ids[0], spec.eoi_id, *ids[2:]])


def test_cli_builds_both_ways(tmp_path, vq_dir, manifest, capsys):
    base = make_base_tokenizer(tmp_path / "base", "mistral")
    assert main(["build-tokenizer", "--base", str(base), "--vq", str(vq_dir), "--out", str(tmp_path / "tok")]) == 0
    assert f"<img_0..{K - 1}>" in capsys.readouterr().out
    tokenizer, spec = load_tokenizer(tmp_path / "tok")
    assert tokenizer.convert_tokens_to_ids("[INST]") == 3 and spec.text_vocab_size == len(AutoTokenizer.from_pretrained(base))

    argv = ["build-tokenizer", "--train-sentencepiece", "--corpus", str(manifest), "--vocab-size", str(SP_VOCAB),
            "--vq", str(vq_dir), "--out", str(tmp_path / "sp"), "--pad-multiple", "128"]
    assert main(argv) == 0
    tokenizer, spec = load_tokenizer(tmp_path / "sp")
    assert type(AutoTokenizer.from_pretrained(tmp_path / "sp")) is LlamaTokenizer
    assert spec.vocab_size % 128 == 0 and spec.text_vocab_size == SP_VOCAB
    text = "  two leading spaces kept (no dummy prefix)"
    assert decode_report(tokenizer, encode_report(tokenizer, text)) == text
    assert "ZQXJ" not in tokenizer.get_vocab()  # the held-out test report did not train it


def test_cli_errors_exit_2_with_clear_message(tmp_path, vq_dir, manifest, capsys):
    out = str(tmp_path / "tok")
    assert main(["build-tokenizer", "--base", str(tmp_path / "missing"), "--vq", str(vq_dir), "--out", out]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    assert main(["build-tokenizer", "--base", str(tmp_path), "--vq", str(tmp_path / "novq"), "--out", out]) == 2
    assert "not a VQ checkpoint directory" in capsys.readouterr().err
    assert main(["build-tokenizer", "--train-sentencepiece", "--vq", str(vq_dir), "--out", out]) == 2
    assert "needs --corpus MANIFEST and --vocab-size N" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build-tokenizer", "--base", str(tmp_path), "--train-sentencepiece", "--vq", str(vq_dir), "--out", out])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build-tokenizer", "--help"])
    assert exit_info.value.code == 0 and "--train-sentencepiece" in capsys.readouterr().out
    assert not (tmp_path / "tok").exists()


def test_fixture_helper_builds_a_matching_pair(tmp_path):
    tok_dir, vq_dir = make_visual_tokenizer(tmp_path, family="gpt_neox", codebook_size=24)
    _, spec = load_tokenizer(tok_dir)
    verify_vq(spec, vq_dir, str(tok_dir))
    assert spec.codebook_size == 24 and spec.tokens_per_image == 64
