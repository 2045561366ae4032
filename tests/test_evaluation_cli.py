"""`radllm evaluate` end to end on a tiny study set: metrics.json keys and values, report.html, errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import make_study_set
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from radllm.cli import main
from radllm.encoders import CXREncoder, EncoderSpec, save_cxr_encoder
from radllm.encoders.architectures import build_backbone
from radllm.imaging import save_png
from radllm.manifest import read_manifest


def _encoder_dir(path: Path) -> Path:
    labels = ["Cardiomegaly", "Pleural Effusion"]
    options = {"widths": [4, 8, 8]}
    spec = EncoderSpec(
        arch="small-cnn", label_names=labels, output_names=labels, output_indices=[0, 1],
        thresholds=[0.5, 0.5], input_size=32, arch_options=options,
    )
    torch.manual_seed(0)
    return save_cxr_encoder(CXREncoder(build_backbone("small-cnn", 2, options, "test"), spec), path)


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    manifest = make_study_set(root / "data", n=6)
    studies = read_manifest(manifest)
    pred_dir = root / "pred"
    (pred_dir / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, study in enumerate(studies):
        original = _png(root / "data" / study.images[0].path)
        noisy = np.clip(original + rng.normal(0, 0.05, original.shape), 0, 1).astype(np.float32)
        save_png(noisy, pred_dir / "img" / f"recon{i}.png")
        save_png(rng.uniform(0, 1, original.shape).astype(np.float32), pred_dir / "img" / f"gen{i}.png")
        other = studies[(i + 1) % len(studies)].report.text
        lines += [
            {"task": "report", "study_id": study.study_id, "report": other if i % 2 else study.report.text},
            {"task": "reconstruction", "study_id": study.study_id, "image": f"img/recon{i}.png"},
            {"task": "image", "study_id": study.study_id, "image": f"img/gen{i}.png", "prompt": study.report.text},
            {"task": "vqa", "study_id": study.study_id, "observation": "Edema", "question": "Is there edema?",
             "answer": "yes", "p_yes": float(rng.uniform())},
        ]
    preds = pred_dir / "preds.jsonl"
    preds.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = root / "out"
    code = main([
        "evaluate", "--pred", str(preds), "--ref", str(manifest), "--out", str(out), "--no-meteor",
        "--uncertain-policy", "negative", "--classifier", str(_encoder_dir(root / "enc")), "--samples", "4",
    ])
    assert code == 0
    return root, studies, out


def _strict_json(path: Path) -> dict:
    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_metrics_json_keys_and_policy(evaluated) -> None:
    _, studies, out = evaluated
    metrics = _strict_json(out / "metrics.json")
    for key in ("report/bleu_1", "report/bleu_4", "report/rouge_l", "report/cider", "report/ce_f1_micro_14",
                "report/ce_f1_macro_5", "report/ce_precision/edema", "image/recon_psnr", "image/recon_ssim",
                "image/recon_clinical_agreement", "image/fid", "image/gen_clinical_agreement", "vqa/accuracy",
                "vqa/auroc_micro"):
        assert key in metrics, key
    assert metrics["report/meteor_skipped"] == "disabled"
    assert metrics["eval/uncertain_policy"] == "negative"
    assert metrics["eval/truth_labels"] == "labels"  # VQA/image truth: the manifest has labels for every study
    assert metrics["eval/report_reference_labels"] == "labeler"  # reports: one labeler on both sides
    assert re.fullmatch(r"radllm-rules-[0-9a-f]{12}", metrics["eval/labeler"])
    assert metrics["report/n_studies"] == len(studies)
    assert all("/" in key for key in metrics)


def test_psnr_and_ssim_match_scikit_image(evaluated) -> None:
    root, studies, out = evaluated
    metrics = _strict_json(out / "metrics.json")
    psnrs, ssims = [], []
    for i, study in enumerate(studies):
        ref, rec = _png(root / "data" / study.images[0].path), _png(root / "pred" / "img" / f"recon{i}.png")
        psnrs.append(peak_signal_noise_ratio(ref, rec, data_range=1.0))
        ssims.append(structural_similarity(ref, rec, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    assert metrics["image/recon_psnr"] == pytest.approx(np.mean(psnrs), rel=1e-4)
    assert metrics["image/recon_ssim"] == pytest.approx(np.mean(ssims), rel=1e-4)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_is_self_contained(evaluated) -> None:
    _, studies, out = evaluated
    page = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(page)
    parser.close()
    tags = [t for t, _ in parser.tags]
    assert "link" not in tags and "script" not in tags and "iframe" not in tags
    for _tag, attrs in parser.tags:
        for name, value in attrs.items():
            assert not (value or "").lower().startswith(("http:", "https:", "//")), (name, value)
    images = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 4 * 2  # 4 samples x (reference image, generated image)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in page and "https://" not in page and "url(" not in page
    text = " ".join(parser.text)
    assert studies[0].report.text.split(":")[-1].strip()[:20] in text
    assert "ce_f1_micro_14" in text


def test_unknown_study_and_bad_records_exit_2(tmp_path, capsys) -> None:
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"study_id": "a", "report": "No effusion."}) + "\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"task": "report", "study_id": "zzz", "report": "x"}) + "\n")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "o"), "--no-meteor"]) == 2
    assert "zzz" in capsys.readouterr().err
    pred.write_text(json.dumps({"task": "vqa", "study_id": "a", "observation": "Heart", "answer": "yes", "p_yes": 1}) + "\n")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "o"), "--no-meteor"]) == 2
    assert f"{pred}:1" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_plain_jsonl_references_use_the_labeler(tmp_path) -> None:
    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        json.dumps({"study_id": "a", "report": "Small left pleural effusion."}) + "\n"
        + json.dumps({"study_id": "b", "text": "No pleural effusion."}) + "\n"
    )
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        json.dumps({"task": "report", "study_id": "a", "report": "Small left pleural effusion."}) + "\n"
        + json.dumps({"task": "report", "study_id": "b", "report": "Large pleural effusion."}) + "\n"
    )
    out = tmp_path / "o"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--no-meteor"]) == 0
    metrics = _strict_json(out / "metrics.json")
    assert metrics["eval/truth_labels"] == "labeler" and metrics["eval/report_reference_labels"] == "labeler"
    assert metrics["report/ce_precision/pleural_effusion"] == pytest.approx(0.5)  # tp a, fp b
    assert metrics["report/ce_recall/pleural_effusion"] == pytest.approx(1.0)


def test_file_labels_for_reports_only_when_asked_and_then_with_a_warning(tmp_path, caplog) -> None:
    """A reference whose file label disagrees with its text (as MIMIC's CSV labels can): by default
    both sides go through the labeler; `--ce-labels labels` uses the file and says it mixes labelers."""
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"study_id": "a", "report": "No pleural effusion.", "labels": {"Pleural Effusion": 1}}) + "\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"task": "report", "study_id": "a", "report": "Small left pleural effusion."}) + "\n")
    same = tmp_path / "same"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(same), "--no-meteor", "--bootstrap", "0"]) == 0
    metrics = _strict_json(same / "metrics.json")
    assert metrics["report/ce_precision/pleural_effusion"] == 0.0  # the labeler reads the reference as negative: a false positive
    mixed = tmp_path / "mixed"
    with caplog.at_level("WARNING"):
        assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(mixed), "--no-meteor", "--bootstrap", "0", "--ce-labels", "labels"]) == 0
    metrics = _strict_json(mixed / "metrics.json")
    assert metrics["report/ce_precision/pleural_effusion"] == 1.0 and metrics["eval/report_reference_labels"] == "labels"
    assert "mixes two labelers" in caplog.text and "reports: labels" in (mixed / "report.html").read_text()
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"study_id": "a", "report": "No pleural effusion."}) + "\n")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(plain), "--out", str(tmp_path / "x"), "--ce-labels", "labels"]) == 2
