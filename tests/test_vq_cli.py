"""`radllm vq-train` config errors, `radllm vq-encode` and `radllm vq-eval` against independent references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from radllm.cli import main as cli_main
from radllm.imaging import load_image
from radllm.vq import VQConfig, VQModel, load_vq, save_vq
from radllm.vq.evaluate import NO_CLASSIFIER_NOTE
from vq_fixtures import tiny_train_config, write_image_set

TINY = VQConfig(image_size=32, base_channels=8, channel_mult=[1, 2, 2], num_res_blocks=1, z_channels=16, codebook_size=16, codebook_dim=4)


@pytest.fixture()
def vq_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_vq(VQModel(TINY), tmp_path / "vq")


def test_unknown_config_key_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_train_config(tmp_path / "manifest.jsonl", tmp_path / "run")
    assert cli_main(["vq-train", "--config", str(config), "--set", "optim.learning_rat=1e-3"]) == 2
    assert "learning_rat" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text() + "schedule_typo: 3\n")
    assert cli_main(["vq-train", "--config", str(bad)]) == 2
    assert "schedule_typo" in capsys.readouterr().err


def test_invalid_config_value_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_train_config(tmp_path / "manifest.jsonl", tmp_path / "run")
    assert cli_main(["vq-train", "--config", str(config), "--set", "resume=sometimes"]) == 2
    assert "resume='sometimes'" in capsys.readouterr().err


def test_vq_encode_codes_equal_vq_encode(tmp_path: Path, vq_dir: Path) -> None:
    manifest = write_image_set(tmp_path / "data", n_train=5, n_test=2)
    Path(tmp_path / "data" / "images" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "codes.jsonl"
    assert cli_main(["vq-encode", "--vq", str(vq_dir), "--images", str(tmp_path / "data" / "images"), "--out", str(out), "--batch-size", "3", "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 7  # the broken file is skipped
    vq = load_vq(vq_dir)
    images = torch.stack([load_image(line["path"], 32) for line in lines])
    expected = vq.encode(images)  # [7, 8, 8], one batch
    for line, codes in zip(lines, expected):
        assert line["grid"] == [8, 8]
        assert line["codes"] == codes.flatten().tolist()

    from_manifest = tmp_path / "test_codes.jsonl"
    assert cli_main(["vq-encode", "--vq", str(vq_dir), "--manifest", str(manifest), "--split", "test", "--out", str(from_manifest), "--no-progress"]) == 0
    rows = [json.loads(line) for line in from_manifest.read_text().splitlines()]
    assert [r["study_id"] for r in rows] == ["s005", "s006"] and rows[0]["view"] == "PA"
    by_path = {line["path"]: line["codes"] for line in lines}
    assert all(r["codes"] == by_path[r["path"]] for r in rows)


def test_vq_encode_missing_input_exits_2(tmp_path: Path, vq_dir: Path) -> None:
    assert cli_main(["vq-encode", "--vq", str(vq_dir), "--images", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o.jsonl")]) == 2


def test_vq_eval_writes_metrics_matching_independent_psnr(tmp_path: Path, vq_dir: Path) -> None:
    manifest = write_image_set(tmp_path / "data", n_train=2, n_test=5)
    out = tmp_path / "eval"
    assert cli_main(["vq-eval", "--vq", str(vq_dir), "--manifest", str(manifest), "--out", str(out), "--limit", "4", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr", "ssim", "codebook_usage", "perplexity", "clinical_agreement", "gradient_magnitude_error", "n_images"):
        assert key in metrics
    assert metrics["n_images"] == 4 and metrics["clinical_agreement"] is None and metrics["note"] == NO_CLASSIFIER_NOTE

    # Independent reference: numpy PSNR of the tokenize -> decode round trip, from 8-bit-rounded inputs.
    vq = load_vq(vq_dir)
    paths = sorted((tmp_path / "data" / "images").glob("*.png"))[2:6]
    x = torch.stack([torch.from_numpy(np.rint(load_image(p, 32).numpy() * 255) / 255).float() for p in paths])
    with torch.no_grad():
        codes = vq.encode(x)
        recon = vq.decode_codes(codes).numpy().astype(np.float64)
    mse = ((x.numpy().astype(np.float64) - recon) ** 2).reshape(4, -1).mean(axis=1)
    assert metrics["psnr"] == pytest.approx(float(np.mean(10 * np.log10(1.0 / mse))), rel=1e-4)
    assert metrics["codebook_usage"] == pytest.approx(len(np.unique(codes.numpy())) / 16)

    grid = np.asarray(Image.open(out / "reconstructions.png"))
    assert grid.shape == (64, 4 * 32)  # originals over reconstructions
    np.testing.assert_allclose(grid[:32, :32] / 255.0, x[0, 0].numpy(), atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(grid[32:, :32] / 255.0, recon[0, 0], atol=1 / 255 + 1e-6)


def test_vq_eval_clinical_agreement_with_classifier(tmp_path: Path, vq_dir: Path) -> None:
    from radllm.encoders import clinical_agreement, load_cxr_encoder
    from radllm.encoders.training import build_small_cnn_encoder
    from radllm.encoders.train_config import CXREncoderTrainConfig
    from radllm.encoders import save_cxr_encoder
    from radllm.config import load_config

    torch.manual_seed(1)
    enc_config = load_config(CXREncoderTrainConfig, overrides=["data.manifest=x", "data.image_size=32", "out_dir=x"])
    save_cxr_encoder(build_small_cnn_encoder(enc_config, ["Cardiomegaly", "Pneumothorax"]), tmp_path / "enc")
    manifest = write_image_set(tmp_path / "data", n_train=1, n_test=3)
    out = tmp_path / "eval"
    assert cli_main(["vq-eval", "--vq", str(vq_dir), "--manifest", str(manifest), "--out", str(out), "--classifier", str(tmp_path / "enc"), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    vq, encoder = load_vq(vq_dir), load_cxr_encoder(tmp_path / "enc").freeze()
    x = torch.stack([torch.from_numpy(np.rint(load_image(p, 32).numpy() * 255) / 255).float() for p in sorted((tmp_path / "data" / "images").glob("*.png"))[1:]])
    with torch.no_grad():
        recon = vq.decode_codes(vq.encode(x))
    assert metrics["clinical_agreement"] == pytest.approx(clinical_agreement(encoder, x, recon))
    assert not any(key.startswith("clinical/") for key in metrics)  # the image set carries no labels

    # Labelled: per finding, the classifier's AUROC on originals and reconstructions (pairwise count).
    from radllm.manifest import read_manifest, write_manifest

    studies = read_manifest(manifest)
    cardiomegaly = {study.study_id: [1, 0, -1, 0][i % 4] for i, study in enumerate(studies)}
    for study in studies:
        study.labels["Cardiomegaly"] = cardiomegaly[study.study_id]
    write_manifest(manifest, studies)
    assert cli_main(["vq-eval", "--vq", str(vq_dir), "--manifest", str(manifest), "--out", str(out), "--classifier", str(tmp_path / "enc"), "--no-progress", "--no-probe"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    targets = [cardiomegaly[s.study_id] != 0 for s in studies if s.split == "test"]  # -1 shows the finding
    with torch.no_grad():
        for which, images in (("original", x), ("reconstruction", recon)):
            scores = encoder.predict(images)[:, 0].tolist()
            pairs = [(p, n) for p, tp in zip(scores, targets) if tp for n, tn in zip(scores, targets) if not tn]
            expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
            assert metrics[f"clinical/auroc_{which}/cardiomegaly"] == pytest.approx(expected)
    assert metrics["clinical/auroc_original/pneumothorax"] is None  # blank = negative for every study: one class


def test_vq_eval_code_probe_keys(tmp_path: Path, vq_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radllm.manifest import read_manifest, write_manifest

    manifest = write_image_set(tmp_path / "data", n_train=24, n_test=6)
    out = tmp_path / "eval"
    # Unlabelled studies: the probe is skipped with a note, and refused when asked for.
    assert cli_main(["vq-eval", "--vq", str(vq_dir), "--manifest", str(manifest), "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "probe/note" in metrics and not any(k.startswith("probe/f1") for k in metrics)
    assert cli_main(["vq-eval", "--vq", str(vq_dir), "--manifest", str(manifest), "--out", str(out), "--probe", "--no-progress"]) == 2
    assert "no observation has both positive and negative" in capsys.readouterr().err

    studies = read_manifest(manifest)
    for i, study in enumerate(studies):
        study.labels.update({"Cardiomegaly": [1, 0, -1][i % 3], "Pleural Effusion": i % 2 or None})
    studies[1].images[0].view = "LATERAL"  # not a frontal image: that study is left out
    write_manifest(manifest, studies)
    args = ["--vq", str(vq_dir), "--manifest", str(manifest), "--out", str(out), "--no-progress"]
    args += ["--probe-epochs", "2", "--probe-train-limit", "20"]
    assert cli_main(["vq-eval", *args]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["probe/observations"] == ["Cardiomegaly", "Pleural Effusion"]
    assert metrics["probe/n_fit"] + metrics["probe/n_holdout"] == 19 and metrics["probe/n_train_skipped"] == 1
    assert metrics["probe/n_holdout"] == 4 and metrics["probe/steps"] == 2 and metrics["probe/n_eval"] == 6
    assert metrics["probe/n_present"] == 2 and "probe/note" not in metrics
    for key in ("f1_micro_present", "f1_macro_present", "label_blind_f1_micro_present", "auroc_macro", "f1/cardiomegaly"):
        assert 0.0 <= metrics[f"probe/{key}"] <= 1.0, key
    # Six test studies: Cardiomegaly positive (1 or -1) for 4, Pleural Effusion for 3 -> 7 of 12 pairs.
    assert metrics["probe/label_blind_f1_micro_present"] == pytest.approx(2 * 7 / (2 * 7 + 5))
    assert cli_main(["vq-eval", *args, "--no-probe"]) == 0
    assert not any(k.startswith("probe/") for k in json.loads((out / "metrics.json").read_text()))
