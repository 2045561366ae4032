"""Phantom dataset: files, determinism, label/report agreement, and findings measured on the images."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from radllm.cli import main as cli_main
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS
from radllm.manifest import read_manifest
from radllm.phantoms import generate_phantoms, labels_for, render_study, sample_findings, split_for, write_report
from radllm.phantoms.sampling import sample_acquisition, sample_anatomy
from radllm.report_text import clean_report
from radllm.phantoms.spec import (
    Cardiomegaly,
    FindingSpec,
    LungLesion,
    PleuralEffusion,
    Pneumothorax,
    StudySpec,
)

# ---- an independent, deliberately simple mention/negation/uncertainty reader -------------------

MENTION = {
    "Enlarged Cardiomediastinum": r"mediastin",
    "Cardiomegaly": r"cardiomegaly|heart|cardiac",
    "Lung Opacity": r"opacit",
    "Lung Lesion": r"nodul|\bmass",
    "Edema": r"edema",
    "Consolidation": r"consolidat",
    "Pneumonia": r"pneumonia",
    "Atelectasis": r"atelecta",
    "Pneumothorax": r"pneumothora",
    "Pleural Effusion": r"effusion|costophrenic",
    "Pleural Other": r"pleural thickening|fibrosis",
    "Fracture": r"fracture",
    "Support Devices": r"\btubes?\b|catheter|device",
}
NEGATION = re.compile(r"\bno\b|\bwithout\b|\bnot\b|\bnormal\b|within normal limits|unremarkable", re.I)
HEDGE = re.compile(r"possible|\bmay\b|cannot be excluded|questionable|could represent", re.I)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.)\s+", text) if s]


def read_labels(text: str) -> dict[str, int | None]:
    """Label a report from its sentences: every mention must agree in polarity, else error."""
    labels: dict[str, int | None] = {}
    for name, pattern in MENTION.items():
        polarities = set()
        for sentence in sentences(text):
            if re.search(pattern, sentence, re.I):
                hedged, negated = bool(HEDGE.search(sentence)), bool(NEGATION.search(sentence))
                assert not (hedged and negated), f"hedged and negated at once: {sentence!r}"
                polarities.add(-1 if hedged else 0 if negated else 1)
        assert len(polarities) <= 1, f"{name} mentioned with mixed polarity in {text!r}"
        labels[name] = polarities.pop() if polarities else None
    others = [v for k, v in labels.items() if k != "Support Devices"]
    labels["No Finding"] = None if any(v in (1, -1) for v in others) else 1
    return labels


# ---- helpers --------------------------------------------------------------------------------------


def spec_with(findings: FindingSpec, seed: int) -> tuple[StudySpec, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return StudySpec(anatomy=sample_anatomy(rng), acquisition=sample_acquisition(rng), findings=findings), rng


def width(mask: np.ndarray) -> int:
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[-1] - cols[0] + 1)


def rows_of(mask: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[0]), int(rows[-1])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms") / "ds"
    generate_phantoms(out, n=50, size=128, seed=7, progress=False)
    return out


# ---- files and determinism ------------------------------------------------------------------------


def test_manifest_images_and_label_file(dataset: Path) -> None:
    studies = read_manifest(dataset / "manifest.jsonl")
    assert len(studies) == 50
    with open(dataset / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["study_id", *OBSERVATIONS]
    for study, row in zip(studies, rows):
        assert row["study_id"] == study.study_id
        for name in OBSERVATIONS:
            assert row[name] == ("" if study.labels[name] is None else str(study.labels[name]))
        assert [ref.view for ref in study.images] == ["PA"]
        assert not Path(study.images[0].path).is_absolute()
        with Image.open(study.image_paths(dataset)[0]) as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (128, 128)
            pixels = np.asarray(im)
        assert pixels.dtype == np.uint8 and pixels.max() > 200 and pixels.min() < 30
        assert study.report.text == f"FINDINGS: {study.report.findings} IMPRESSION: {study.report.impression}"
        assert set(study.labels) == set(OBSERVATIONS)
        assert study.meta["ctr"] > 0.3


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, dataset: Path) -> None:
    again = tmp_path / "again"
    generate_phantoms(again, n=50, size=128, seed=7, progress=False)
    for name in ("manifest.jsonl", "labels.csv", "phantoms.json"):
        assert (again / name).read_bytes() == (dataset / name).read_bytes()
    images = sorted(p.name for p in (dataset / "images").iterdir())
    assert images == sorted(p.name for p in (again / "images").iterdir()) and len(images) == 50
    for name in images:
        assert (again / "images" / name).read_bytes() == (dataset / "images" / name).read_bytes()
    other = tmp_path / "other"
    generate_phantoms(other, n=5, size=128, seed=8, progress=False)
    first = read_manifest(other / "manifest.jsonl")[0]
    assert first.report.text != read_manifest(dataset / "manifest.jsonl")[0].report.text


def test_prefix_stable_when_n_grows(tmp_path: Path, dataset: Path) -> None:
    small = tmp_path / "small"
    generate_phantoms(small, n=5, size=128, seed=7, progress=False)
    big = read_manifest(dataset / "manifest.jsonl")[:5]
    assert [s.to_json() for s in read_manifest(small / "manifest.jsonl")] == [s.to_json() for s in big]


@pytest.mark.slow
def test_workers_give_identical_output(tmp_path: Path, dataset: Path) -> None:
    par = tmp_path / "par"
    generate_phantoms(par, n=12, size=128, seed=7, workers=2, progress=False)
    ser = tmp_path / "ser"
    generate_phantoms(ser, n=12, size=128, seed=7, workers=1, progress=False)
    assert (par / "manifest.jsonl").read_bytes() == (ser / "manifest.jsonl").read_bytes()
    for p in (ser / "images").iterdir():
        assert (par / "images" / p.name).read_bytes() == p.read_bytes()


def test_splits_deterministic_and_complete(dataset: Path) -> None:
    studies = read_manifest(dataset / "manifest.jsonl")
    splits = [s.split for s in studies]
    assert splits.count("train") == 40 and splits.count("val") == 5 and splits.count("test") == 5
    assert splits == [split_for(7, i) for i in range(50)]
    assert [split_for(8, i) for i in range(50)] != splits  # the seed reshuffles blocks
    for start in range(0, 50, 10):
        assert set(splits[start : start + 10]) == {"train", "val", "test"}


# ---- labels and reports ---------------------------------------------------------------------------


def test_labels_agree_with_report_text() -> None:
    rng = np.random.default_rng(123)
    seen = {name: set() for name in OBSERVATIONS}
    for _ in range(600):
        findings = sample_findings(rng)
        report = write_report(findings, rng)
        labels = labels_for(findings)
        assert report.text == f"FINDINGS: {report.findings} IMPRESSION: {report.impression}"
        # Already in the cleaned form prepared datasets get.
        assert clean_report(report.findings) == report.findings and clean_report(report.impression) == report.impression
        assert read_labels(report.text) == labels, report.text
        for name, value in labels.items():
            seen[name].add(value)
        # Laterality in the text matches the spec for one-sided findings.
        for finding, word in ((findings.pneumothorax, "pneumothorax"), (findings.effusion, "effusion")):
            if finding is not None:
                words = ("bilateral", "both") if finding.side == "bilateral" else (finding.side,)
                said = [s for s in sentences(report.findings) if word in s.lower()]
                assert said and all(any(w in s.lower() for w in words) for s in said), report.findings
    # Every value the encoding allows occurs where the phantom can produce it.
    for name in ("Cardiomegaly", "Lung Opacity", "Lung Lesion", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Fracture"):
        assert seen[name] == {1, 0, -1, None}, (name, seen[name])
    assert seen["No Finding"] == {1, None}
    assert seen["Support Devices"] == {1, None}
    assert seen["Pleural Other"] == {None}


def test_no_finding_rule_and_contradictions() -> None:
    normal = labels_for(FindingSpec(negated=("Pneumothorax", "Pleural Effusion")))
    assert normal["No Finding"] == 1 and normal["Pneumothorax"] == 0 and normal["Cardiomegaly"] is None
    hedged = labels_for(FindingSpec(effusion=PleuralEffusion("left", "small", hedged=True)))
    assert hedged["Pleural Effusion"] == -1 and hedged["No Finding"] is None
    with pytest.raises(ValueError, match="Pneumothorax"):
        labels_for(FindingSpec(pneumothorax=Pneumothorax("left", "small"), negated=("Pneumothorax",)))
    with pytest.raises(ValueError, match="Tuberculosis"):
        labels_for(FindingSpec(negated=("Tuberculosis",)))


def test_prevalence() -> None:
    rng = np.random.default_rng(5)
    specs = [sample_findings(rng) for _ in range(3000)]
    normal = np.mean([s.is_normal for s in specs])
    assert 0.25 < normal < 0.36
    for name in ("cardiomegaly", "effusion", "pneumothorax", "airspace", "lesion", "atelectasis", "fracture"):
        rate = np.mean([getattr(s, name) is not None for s in specs])
        assert 0.1 <= rate <= 0.25, (name, rate)
    assert 0.1 <= np.mean([s.devices.any for s in specs]) <= 0.25


# ---- findings measured on the rendered images -----------------------------------------------------


def test_cardiothoracic_ratio_from_masks() -> None:
    cases = [Cardiomegaly(ctr) for ctr in (0.57, 0.62, 0.66)] + [Cardiomegaly(0.535, hedged=True)] + [None] * 4
    for seed, cardio in enumerate(cases):
        spec, rng = spec_with(FindingSpec(cardiomegaly=cardio), seed)
        r = render_study(spec, 128, rng)
        lungs = r.masks["lung_right"] | r.masks["lung_left"]
        measured = width(r.masks["heart"]) / width(lungs)
        assert abs(measured - spec.ctr) < 0.03, (measured, spec.ctr)
        assert (measured > 0.5) == (cardio is not None)
        assert (labels_for(spec.findings)["Cardiomegaly"] in (1, -1)) == (cardio is not None)


def test_image_conventions_air_dark_bone_bright() -> None:
    spec, rng = spec_with(FindingSpec(), 3)
    r = render_study(spec, 128, rng)
    img = r.image.astype(float)
    lungs = r.masks["lung_right"] | r.masks["lung_left"]
    assert img[:6, :6].mean() < 25  # air outside the body, above the shoulders
    assert img[r.masks["heart"]].mean() > img[lungs].mean() + 60
    # Posterior ribs cross the lungs as brighter bands: the lung profile along a column oscillates.
    col = int(np.median(np.flatnonzero(r.masks["lung_right"].any(axis=0))))
    profile = ndimage.gaussian_filter1d(img[:, col][r.masks["lung_right"][:, col]], 1.0)
    peaks = np.flatnonzero((profile[1:-1] > profile[:-2]) & (profile[1:-1] >= profile[2:]))
    assert len(peaks) >= 5


def _mirror_pairs(mask: np.ndarray, other_lung: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of `mask` and their mirror images (about the lungs' centre column) in the other lung."""
    rows, cols = np.nonzero(mask)
    lungs_cols = np.flatnonzero(other_lung.any(axis=0) | mask.any(axis=0))
    centre = 0.5 * (lungs_cols[0] + lungs_cols[-1])
    mirrored = np.clip(np.round(2 * centre - cols).astype(int), 0, mask.shape[1] - 1)
    keep = other_lung[rows, mirrored]
    return (rows[keep], cols[keep]), (rows[keep], mirrored[keep])


def test_pneumothorax_dark_rim_and_pleural_line() -> None:
    for seed, (side, severity) in enumerate([("right", "small"), ("left", "small"), ("right", "moderate"), ("left", "large")]):
        spec, rng = spec_with(FindingSpec(pneumothorax=Pneumothorax(side, severity)), 20 + seed)
        r = render_study(spec, 256, rng)
        img = r.image.astype(float)
        rim = r.masks["pneumothorax"]
        other = "left" if side == "right" else "right"
        affected, mirror = _mirror_pairs(rim, r.masks[f"lung_{other}"])
        assert len(affected[0]) > 150
        # Hyperlucent compared with the same region of the healthy lung ...
        assert img[affected].mean() < img[mirror].mean() - 15, (side, severity)
        # ... and with the same patient imaged without the pneumothorax (same seed, same noise).
        plain, plain_rng = spec_with(FindingSpec(), 20 + seed)
        before = render_study(plain, 256, plain_rng).image.astype(float)
        assert img[rim].mean() < before[rim].mean() - 15
        # The visceral pleural line: the lung edge next to the rim is brighter than the rim.
        lung = r.masks[f"lung_{side}"] & ~rim
        edge = lung & ndimage.binary_dilation(rim, iterations=2)
        assert img[edge].mean() > img[rim & ndimage.binary_dilation(lung, iterations=3)].mean() + 20


def test_effusion_whitens_the_affected_base() -> None:
    for seed, (side, severity) in enumerate([("right", "small"), ("left", "small"), ("left", "moderate"), ("right", "large")]):
        spec, rng = spec_with(FindingSpec(effusion=PleuralEffusion(side, severity)), 40 + seed)
        r = render_study(spec, 128, rng)
        img = r.image.astype(float)
        other = "left" if side == "right" else "right"

        def base(lung: np.ndarray) -> float:
            top, bottom = rows_of(lung)
            band = lung.copy()
            band[: bottom - (bottom - top) // 5] = False
            return float(img[band].mean())

        assert base(r.masks[f"lung_{side}"]) > base(r.masks[f"lung_{other}"]) + 20, (side, severity)
        assert r.masks[f"effusion_{side}"].sum() > 0


def test_nodule_is_a_bright_spot() -> None:
    for seed, (side, size_cm) in enumerate([("right", 1.6), ("left", 2.4), ("right", 4.5)]):
        spec, rng = spec_with(FindingSpec(lesion=LungLesion(side, size_cm, 0.35, 0.6)), 60 + seed)
        r = render_study(spec, 128, rng)
        img = r.image.astype(float)
        spot = r.masks["lesion"]
        radius_px = 0.5 * size_cm / 36.0 * 128 * spec.acquisition.scale
        assert abs(spot.sum() - np.pi * radius_px**2) < 0.5 * np.pi * radius_px**2
        # Local background: a ring of aerated lung around the lesion.
        ring = ndimage.binary_dilation(spot, iterations=4) & ~ndimage.binary_dilation(spot, iterations=2)
        ring &= r.masks[f"lung_{side}"]
        assert img[spot].mean() > img[ring].mean() + 25, (side, size_cm)


# ---- API and CLI errors ---------------------------------------------------------------------------


def test_render_rejects_tiny_size() -> None:
    spec, rng = spec_with(FindingSpec(), 0)
    with pytest.raises(RadllmError, match="size 16"):
        render_study(spec, 16, rng)


def test_cli_writes_dataset_and_reports_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert cli_main(["phantoms", "--out", str(out), "--n", "6", "--size", "128", "--no-progress"]) == 0
    assert "wrote 6 phantom studies" in capsys.readouterr().out
    assert len(read_manifest(out / "manifest.jsonl")) == 6 and len(list((out / "images").glob("*.png"))) == 6
    # An existing dataset is only replaced on request.
    assert cli_main(["phantoms", "--out", str(out), "--n", "6", "--size", "128", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["phantoms", "--out", str(out), "--n", "3", "--size", "128", "--no-progress", "--overwrite"]) == 0
    assert len(read_manifest(out / "manifest.jsonl")) == 3 and len(list((out / "images").glob("*.png"))) == 3
    # A directory that is not a phantom dataset is never replaced.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert cli_main(["phantoms", "--out", str(foreign), "--n", "2", "--no-progress", "--overwrite"]) == 2
    assert "refusing" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "keep me"
    assert cli_main(["phantoms", "--out", str(tmp_path / "bad"), "--n", "0", "--no-progress"]) == 2
    assert "n=0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
