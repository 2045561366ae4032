"""Shard schema, tar writer and the manifest -> shards pipeline (single process and deepspeed ranks).

References used: the `tar` program and plain `webdataset.WebDataset` read the shards; codes are
compared with `VQModel.encode` of `load_image` run here directly; report ids are decoded back with
the tokenizer; samples are compared with the studies in the manifest.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from launching import run_group
from tokenizer_fixtures import make_visual_tokenizer

from radllm.cli import main as cli_main
from radllm.data.reader import ShardStream
from radllm.data.sample import CorruptSample, TokenizedStudy, UnsafeMember, codes_dtype, decode_study, encode_study, study_key
from radllm.data.shards import ShardReadError, iter_raw_samples, load_index, write_shard
from radllm.data.tokenize import plan_shards, rank_shards, tokenize_shards, write_index
from radllm.errors import RadllmError
from radllm.imaging import load_image
from radllm.manifest import ImageRef, Report, Study, write_manifest
from radllm.report_text import clean_report
from radllm.vocab.codec import decode_report
from radllm.vocab.load import load_tokenizer
from radllm.vq.checkpoint import load_vq, save_vq

ROOT = Path(__file__).resolve().parents[1]


def study(n: int, codes_dtype_: np.dtype = np.dtype(np.int16), views: tuple[str, ...] = ("PA",)) -> TokenizedStudy:
    rng = np.random.default_rng(n)
    return TokenizedStudy(
        key=study_key(f"s{n}"),
        study_id=f"s{n}",
        split="train",
        image_codes=[rng.integers(0, 100, (3, 5)).astype(codes_dtype_) for _ in views],
        views=list(views),
        report=f"Report {n} – naïve café.",
        report_ids=np.arange(n, n + 4, dtype=np.int32),
        labels={"Cardiomegaly": 1, "Edema": -1, "No Finding": 0},
        meta={"age": 50 + n, "source": "test"},
    )


# --- schema and tar writer ------------------------------------------------------------------


def test_roundtrip_through_tar_read_by_tarfile(tmp_path):
    studies = [study(1), study(2, np.dtype(np.int32), ("PA", "LATERAL"))]
    path = tmp_path / "a.tar"
    assert write_shard(path, studies) == 2
    with tarfile.open(path) as tar:  # the standard library, not the reader under test
        names = tar.getnames()
        members = {name: tar.extractfile(name).read() for name in names}
    assert names[:5] == ["s1.codes_0.npy", "s1.labels.json", "s1.meta.json", "s1.report.txt", "s1.report_ids.npy"]
    for original in studies:
        own = {name.split(".", 1)[1]: data for name, data in members.items() if name.startswith(original.key + ".")}
        decoded = decode_study(original.key, own)
        assert decoded.study_id == original.study_id and decoded.views == original.views
        assert [c.dtype for c in decoded.image_codes] == [c.dtype for c in original.image_codes]
        assert all(np.array_equal(a, b) for a, b in zip(decoded.image_codes, original.image_codes))
        assert np.array_equal(decoded.report_ids, original.report_ids) and decoded.report_ids.dtype == np.int32
        assert decoded.report == original.report and decoded.meta == original.meta
        assert decoded.labels["Cardiomegaly"] == 1 and decoded.labels["Edema"] == -1 and decoded.labels["Atelectasis"] is None


def test_shards_are_byte_identical_when_rewritten(tmp_path):
    write_shard(tmp_path / "a.tar", [study(1), study(2)])
    write_shard(tmp_path / "b.tar", [study(1), study(2)])
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*.tmp"))


def test_codes_dtype_and_keys():
    assert codes_dtype(32767) == np.int16 and codes_dtype(32768) == np.int32
    assert study_key("s123_a-b") == "s123_a-b"
    odd = [study_key("p10/s1.2"), study_key("p10_s1_2"), study_key("p10.s1/2")]
    assert len(set(odd)) == 3 and all("." not in k and "/" not in k for k in odd)
    with pytest.raises(ValueError, match="int16/int32"):
        encode_study(study(1, np.dtype(np.int64)))
    with pytest.raises(ValueError, match="reserved"):
        encode_study(TokenizedStudy(**{**study(1).__dict__, "meta": {"split": "x"}}))


def test_decoder_refuses_unsafe_and_malformed_members():
    members = encode_study(study(3))
    with pytest.raises(UnsafeMember, match="x.pth"):
        decode_study("s3", {**members, "x.pth": b"anything"})
    buffer = io.BytesIO()
    np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptSample, match="allow_pickle"):
        decode_study("s3", {**members, "codes_0.npy": buffer.getvalue()})
    with pytest.raises(CorruptSample, match="expected 0..0"):
        decode_study("s3", {**members, "codes_1.npy": members["codes_0.npy"]})
    with pytest.raises(CorruptSample, match="label 'Edema' = 7"):
        decode_study("s3", {**members, "labels.json": b'{"Edema": 7}'})


def test_truncated_tar_raises_after_the_complete_samples(tmp_path):
    path = tmp_path / "a.tar"
    write_shard(path, [study(i) for i in range(4)])
    with tarfile.open(path) as tar:
        cut = tar.getmember("s2.report.txt").offset_data + 3  # inside sample s2
    got = []
    with pytest.raises(ShardReadError, match="cut.tar"):
        for raw in iter_raw_samples(io.BytesIO(path.read_bytes()[:cut]), "cut.tar"):
            got.append(raw.key)
    assert got == ["s0", "s1"]  # the partial sample s2 is dropped


# --- the tokenization pipeline --------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """7 studies (train 5, val 2) with random 8-bit PNGs of odd shapes; study s1 has a corrupt PNG."""
    root = tmp_path_factory.mktemp("tokenize")
    tok_dir, vq_dir = make_visual_tokenizer(root / "artifacts", codebook_size=16, image_size=32)
    rng = np.random.default_rng(0)
    studies = []
    for i in range(7):
        images = []
        for v in range(2 if i % 3 == 0 else 1):
            path = root / "images" / f"{i}_{v}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 30 + 4 * i), dtype=np.uint8)).save(path)
            images.append(ImageRef(f"images/{i}_{v}.png", "PA" if v == 0 else "LATERAL"))
        text = f"FINDINGS: XXXX The heart is normal in size.  Small left pleural effusion {i} cm.\nIMPRESSION: No pneumothorax."
        studies.append(Study(f"s{i}", images, Report(text=text), {"Pleural Effusion": 1}, "train" if i < 5 else "val", {"n": i}))
    studies[3].images[1] = ImageRef("images/missing.png", "LATERAL")  # keeps its PA view
    (root / "images" / "1_0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # s1 has no readable image
    write_manifest(root / "manifest.jsonl", studies)
    return root, tok_dir, vq_dir, studies


def run_tokenize(root: Path, tok_dir: Path, vq_dir: Path, out: Path, **kwargs):
    summary = tokenize_shards(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2, batch_size=3, num_workers=0, progress=False, **kwargs)
    return summary, write_index(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2)


def test_tokenize_rejects_a_dicom_that_decodes_to_nan(dataset, tmp_path):
    """A NaN RescaleSlope used to become an all-zero code grid in the shards; now it is a counted reject."""
    from test_imaging import dicom_dataset, write

    root, tok_dir, vq_dir, _ = dataset
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    ds = dicom_dataset(np.full((40, 38), 900), bits_stored=12)
    ds.RescaleSlope, ds.RescaleIntercept = "NaN", "0"
    write(ds, copy / "images" / "2_0.png")  # s2's only image; the content decides the decoder, not the suffix
    summary, index = run_tokenize(copy, tok_dir, vq_dir, tmp_path / "shards")
    rejects = [json.loads(line) for line in (tmp_path / "shards" / "rejects.jsonl").read_text().splitlines()]
    by_study = {r["study_id"]: r for r in rejects}
    assert set(by_study) == {"s1", "s2", "s3"} and index.num_rejects == 3
    assert "2_0.png: the modality transform gives non-finite pixel values" in by_study["s2"]["reason"]
    assert index.num_samples("train") == 3  # s2 left out, not written as a code grid of zeros


def test_tokenize_writes_shards_that_match_an_independent_encoding(dataset, tmp_path):
    root, tok_dir, vq_dir, studies = dataset
    summary, index = run_tokenize(root, tok_dir, vq_dir, tmp_path / "shards")
    out = tmp_path / "shards"
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"]
    assert {split: index.num_samples(split) for split in index.splits} == {"train": 4, "val": 2}
    assert [s.num_samples for s in index.splits["train"]] == [1, 2, 1]  # s1 left out of shard 0
    assert summary.shards_written == 4 and summary.samples_written == 6

    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["study_id"], Path(r["image_path"]).name) for r in rejects] == [("s1", "1_0.png"), ("s3", "missing.png")]
    assert all(r["reason"] for r in rejects) and index.num_rejects == 2

    # Read back with plain webdataset and decode by hand; compare with the VQ-GAN run here.
    vq = load_vq(vq_dir)
    tokenizer, spec = load_tokenizer(tok_dir)
    assert index.visual_vocab == spec
    urls = [str(out / s.name) for split in ("train", "val") for s in index.splits[split]]
    samples = {sample["__key__"]: sample for sample in wds.WebDataset(urls, shardshuffle=False)}
    assert sorted(samples) == ["s0", "s2", "s3", "s4", "s5", "s6"]
    for manifest_study in studies:
        if manifest_study.study_id == "s1":
            continue
        sample = samples[manifest_study.study_id]
        paths = manifest_study.image_paths(root)
        readable = [i for i, p in enumerate(paths) if p.name != "missing.png"]
        images = torch.stack([load_image(paths[i], 32) for i in readable])
        with torch.no_grad():
            expected = vq.encode(images).numpy()
        for view, i in enumerate(readable):
            codes = np.load(io.BytesIO(sample[f"codes_{view}.npy"]), allow_pickle=False)
            assert codes.dtype == np.int16 and np.array_equal(codes, expected[view])
        meta = json.loads(sample["meta.json"])
        assert meta == {"study_id": manifest_study.study_id, "split": manifest_study.split, "views": [manifest_study.images[i].view for i in readable], "n": manifest_study.meta["n"]}
        report = sample["report.txt"].decode("utf-8")
        assert report == clean_report(manifest_study.report.text) and "XXXX" not in report
        ids = np.load(io.BytesIO(sample["report_ids.npy"]), allow_pickle=False)
        assert ids.dtype == np.int32 and decode_report(tokenizer, ids) == report
        assert json.loads(sample["labels.json"])["Pleural Effusion"] == 1

    listing = subprocess.run(["tar", "-tf", str(out / "val-000000.tar")], capture_output=True, text=True, check=True).stdout.split()
    rest = ["labels.json", "meta.json", "report.txt", "report_ids.npy"]
    assert listing == [f"s5.{m}" for m in ["codes_0.npy", *rest]] + [f"s6.{m}" for m in ["codes_0.npy", "codes_1.npy", *rest]]
    # And the streaming reader sees the same samples.
    assert sorted(s.key for s in ShardStream(out, "train", shuffle=False).iter_worker(0, 0, 1)) == ["s0", "s2", "s3", "s4"]


def test_rerun_skips_complete_shards_and_rewrites_only_missing_ones(dataset, tmp_path):
    root, tok_dir, vq_dir, _ = dataset
    out = tmp_path / "shards"
    run_tokenize(root, tok_dir, vq_dir, out)
    index_bytes = (out / "index.json").read_bytes()
    shard_bytes = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}

    summary, _ = run_tokenize(root, tok_dir, vq_dir, out)
    assert (summary.shards_written, summary.shards_skipped) == (0, 4)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == mtimes
    assert (out / "index.json").read_bytes() == index_bytes

    # A run killed after writing train-000001.tar but before its record: only that shard is redone.
    (out / "parts" / "train-000001.tar.json").unlink()
    (out / ".train-000002.tar.abc.tmp").write_bytes(b"left by a killed run")
    summary, _ = run_tokenize(root, tok_dir, vq_dir, out)
    assert (summary.shards_written, summary.shards_skipped) == (1, 3)
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == shard_bytes
    assert (out / "index.json").read_bytes() == index_bytes
    assert not list(out.glob(".*.tmp"))


def test_a_stop_request_ends_tokenization_after_a_complete_shard_and_a_rerun_finishes(dataset, tmp_path):
    """SIGTERM (recorded by the CLI's StopRequest) ends the run after the shard in progress, with its
    record written; the rerun writes the rest, byte-identical to an uninterrupted run."""
    import signal

    from radllm.preemption import JobStopped, StopRequest

    root, tok_dir, vq_dir, _ = dataset
    whole = tmp_path / "whole"
    run_tokenize(root, tok_dir, vq_dir, whole)
    stop = StopRequest()
    stop.signal = signal.SIGTERM  # as its handler records it
    out = tmp_path / "stopped"
    with pytest.raises(JobStopped, match=r"stopped by SIGTERM after 1 of this rank's 4 pending shard\(s\)"):
        tokenize_shards(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2, batch_size=3, num_workers=0, progress=False, stop=stop)
    assert [p.name for p in (out / "parts").glob("*.json")] == ["train-000000.tar.json"] and not list(out.glob(".*.tmp"))
    summary, _ = run_tokenize(root, tok_dir, vq_dir, out)
    assert (summary.shards_written, summary.shards_skipped) == (3, 1)
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == {p.name: p.read_bytes() for p in whole.glob("*.tar")}
    assert (out / "index.json").read_bytes() == (whole / "index.json").read_bytes()


def test_ranks_write_disjoint_shards_and_the_index_waits_for_all(dataset, tmp_path):
    root, tok_dir, vq_dir, studies = dataset
    plans = plan_shards(studies, 2)
    assert [p.name for p in rank_shards(plans, 1, 2)] == ["train-000001.tar", "val-000000.tar"]
    out = tmp_path / "shards"
    tokenize_shards(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2, num_workers=0, progress=False, rank=1, world_size=2)
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000001.tar", "val-000000.tar"]
    with pytest.raises(RadllmError, match="2 shard\\(s\\) not written yet"):
        write_index(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2)
    tokenize_shards(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2, num_workers=1, progress=False, rank=0, world_size=2)
    index = write_index(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=2)
    single = tmp_path / "single"
    run_tokenize(root, tok_dir, vq_dir, single)
    assert index.to_json() == load_index(single).to_json()


def test_mismatched_vq_and_reused_output_dir_are_clear_errors(dataset, tmp_path):
    root, tok_dir, vq_dir, _ = dataset
    model = load_vq(vq_dir)
    with torch.no_grad():
        model.quantizer.codebook.weight.add_(0.01)  # same shapes, other weights
    other_vq = save_vq(model, tmp_path / "other-vq")
    with pytest.raises(RadllmError, match="(?s)different VQ-GAN.*vq_hash"):
        tokenize_shards(root / "manifest.jsonl", other_vq, tok_dir, tmp_path / "x", progress=False)
    out = tmp_path / "shards"
    run_tokenize(root, tok_dir, vq_dir, out)
    with pytest.raises(RadllmError, match="made from other inputs"):
        tokenize_shards(root / "manifest.jsonl", vq_dir, tok_dir, out, shard_size=3, num_workers=0, progress=False)


def test_cli_tokenize(dataset, tmp_path, capsys):
    root, tok_dir, vq_dir, _ = dataset
    args = ["tokenize", "--manifest", str(root / "manifest.jsonl"), "--vq", str(vq_dir), "--tokenizer", str(tok_dir), "--out", str(tmp_path / "s"), "--shard-size", "4", "--num-workers", "0", "--no-progress"]
    assert cli_main(args) == 0
    assert "samples train: 4, val: 2; 2 rejected" in capsys.readouterr().out
    assert cli_main([*args[:6], str(tmp_path), *args[7:]]) == 2  # a directory that is not a tokenizer
    assert "radllm tokenize: error:" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_deepspeed_launcher_two_ranks_match_a_single_process(dataset, tmp_path):
    root, tok_dir, vq_dir, _ = dataset
    out = tmp_path / "ds"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [
        shutil.which("deepspeed", path=env["PATH"]), "--num_accelerators", "2", "--master_port", str(_free_port()),
        str(ROOT / "tools" / "tokenize_shards.py"), "--manifest", str(root / "manifest.jsonl"), "--vq", str(vq_dir),
        "--tokenizer", str(tok_dir), "--out", str(out), "--shard-size", "2", "--batch-size", "3", "--num-workers", "0", "--no-progress",
    ]
    result = run_group(command, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    single = tmp_path / "single"
    run_tokenize(root, tok_dir, vq_dir, single)
    assert (out / "index.json").read_bytes() == (single / "index.json").read_bytes()
    assert (out / "rejects.jsonl").read_bytes() == (single / "rejects.jsonl").read_bytes()
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == {p.name: p.read_bytes() for p in single.glob("*.tar")}


# --- index.json as untrusted input ------------------------------------------------------------


@pytest.fixture
def written_shards(dataset, tmp_path):
    root, tok_dir, vq_dir, _ = dataset
    run_tokenize(root, tok_dir, vq_dir, tmp_path / "shards")
    return tmp_path / "shards"


@pytest.mark.parametrize("name", ["../outside.tar", "/etc/outside.tar", "sub/train.tar", ".hidden.tar", "train.txt", 7])
def test_index_shard_names_must_be_plain_files_in_the_directory(written_shards, name):
    index_path = written_shards / "index.json"
    obj = json.loads(index_path.read_text())
    obj["splits"]["train"]["shards"][0]["name"] = name
    index_path.write_text(json.dumps(obj))
    (written_shards.parent / "outside.tar").write_bytes((written_shards / "train-000000.tar").read_bytes())
    with pytest.raises(RadllmError, match=r"index\.json: shard name .*expected a plain file name ending in \.tar"):
        load_index(written_shards)


def test_binary_garbage_index_is_a_clear_error(written_shards, capsys):
    (written_shards / "index.json").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(RadllmError, match=r"index\.json: not UTF-8 text"):
        load_index(written_shards)
    assert cli_main(["verify-shards", str(written_shards)]) == 2
    err = capsys.readouterr().err
    assert "index.json: not UTF-8 text" in err and "Traceback" not in err


def test_verify_shards_finds_changed_and_truncated_shards(written_shards, capsys):
    assert cli_main(["verify-shards", str(written_shards), "--no-progress"]) == 0
    assert "4 shard(s)" in capsys.readouterr().out
    changed = written_shards / "train-000001.tar"
    data = bytearray(changed.read_bytes())
    data[600] ^= 0xFF
    changed.write_bytes(bytes(data))
    assert cli_main(["verify-shards", str(written_shards), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "1 of 4 shard(s)" in err and "train-000001.tar: sha256" in err

    # A shard rewritten with one sample fewer and its hash updated: only the count can tell.
    index_path = written_shards / "index.json"
    shutil.copy(written_shards / "train-000000.tar", changed)  # 1 sample where the index lists 2
    obj = json.loads(index_path.read_text())
    from radllm.vocab_spec import sha256_file

    obj["splits"]["train"]["shards"][1]["sha256"] = sha256_file(changed)
    index_path.write_text(json.dumps(obj))
    assert cli_main(["verify-shards", str(written_shards), "--no-progress"]) == 2
    assert "train-000001.tar: 1 samples, the index lists 2" in capsys.readouterr().err
