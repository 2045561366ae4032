"""IU X-Ray and MIMIC-CXR preparation on small trees written in the real formats.

Fixture images are synthetic radiograph-like pictures: a "frontal" one has two lungs either side
of a central spine (mirror-symmetric), a "lateral" one a single lung field with the spine at one
edge and the sternum at the other.
"""

import csv
import gzip
import json
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from PIL import Image

from radllm.cli import main
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, empty_labels
from radllm.manifest import read_manifest
from radllm.prepare import prepare_iu_xray, prepare_mimic_cxr
from radllm.prepare.outcome import Reject
from radllm.prepare.split import assign_splits, split_counts
from radllm.prepare.symmetry_views import assign_views, load_gray, mirror_symmetry


def chest(kind: str, h: int = 160, w: int = 136, seed: int = 0) -> np.ndarray:
    """A [h, w] float image in [0, 1] that looks like a frontal or a lateral chest radiograph."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    y, x = yy / h, xx / w
    img = np.full((h, w), 0.05)
    img[((x - 0.5) / 0.46) ** 2 + ((y - 0.5) / 0.48) ** 2 < 1] = 0.6  # body
    if kind == "frontal":
        for cx in (0.3, 0.7):
            img[((x - cx) / 0.15) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1] = 0.2  # lungs
        img[np.abs(x - 0.5) < 0.04] = 0.85  # spine
        img[((x - 0.56) / 0.12) ** 2 + ((y - 0.62) / 0.1) ** 2 < 1] = 0.7  # heart, slightly left
    else:
        img[((x - 0.45) / 0.27) ** 2 + ((y - 0.45) / 0.32) ** 2 < 1] = 0.2  # overlapping lungs
        img[(np.abs(x - 0.8) < 0.05) & (y > 0.1)] = 0.9  # spine at the back
        img[np.abs(x - 0.14) < 0.02] = 0.8  # sternum at the front
        img[((x - 0.33) / 0.12) ** 2 + ((y - 0.62) / 0.12) ** 2 < 1] = 0.55  # heart
    return np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)


def save_png(path: Path, kind: str, bits: int = 8, seed: int = 0) -> None:
    pixels = chest(kind, seed=seed)
    array = (pixels * 65535).astype(np.uint16) if bits == 16 else (pixels * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rejects_of(out: Path) -> list[tuple[str, str]]:
    return [(r["study_id"], r["reason"]) for r in read_jsonl(out / "rejects.jsonl")]


# --------------------------------------------------------------------------- symmetry views


def test_mirror_symmetry_hand_computed_cases():
    ramp = np.tile(np.arange(64, dtype=np.float32), (32, 1))  # its mirror is exactly anti-correlated
    assert mirror_symmetry(ramp) == pytest.approx(-1.0)
    bump = np.exp(-((np.arange(64) - 35.0) ** 2) / 20)  # axis 3.5 columns off centre: mirror shift 7 <= 64 / 8
    assert mirror_symmetry(np.tile(bump, (16, 1))) == pytest.approx(1.0)
    assert mirror_symmetry(np.ones((20, 20))) == 0.0
    assert mirror_symmetry(chest("frontal")) > 0.85 > 0.7 > mirror_symmetry(chest("lateral"))


def test_load_gray_keeps_16_bit_depth(tmp_path):
    save_png(tmp_path / "a.png", "frontal", bits=16)
    pixels = load_gray(tmp_path / "a.png")
    assert pixels.dtype == np.float32 and pixels.shape == (160, 136) and pixels.max() > 255


def test_assign_views_calibrates_threshold_on_two_image_studies():
    scores = {"a": [0.5, 0.9], "b": [0.92, 0.6], "single_f": [0.85], "single_l": [0.62], "three": [0.88, 0.55, 0.8]}
    got = assign_views(scores)
    assert got.threshold == pytest.approx((0.91 + 0.55) / 2)
    assert got.views == {
        "a": ["LATERAL", "FRONTAL"],
        "b": ["FRONTAL", "LATERAL"],
        "single_f": ["FRONTAL"],
        "single_l": ["LATERAL"],
        "three": ["FRONTAL", "LATERAL", "FRONTAL"],
    }
    assert assign_views({"x": [0.9]}).views == {"x": ["UNKNOWN"]}  # nothing to calibrate on


# --------------------------------------------------------------------------- split


def test_seeded_split_is_deterministic_and_7_1_2():
    ids = [f"CXR{i}" for i in range(1, 51)]
    first = assign_splits(ids, seed=0)
    assert first == assign_splits(list(reversed(ids)), seed=0)  # input order does not matter
    assert Counter(first.values()) == {"train": 35, "val": 5, "test": 10}
    other = assign_splits(ids, seed=1)
    assert other != first and Counter(other.values()) == {"train": 35, "val": 5, "test": 10}
    assert Counter(assign_splits(ids[:7], seed=0).values()) == {"train": 5, "val": 1, "test": 1}
    with pytest.raises(ValueError, match="duplicate"):
        assign_splits(["a", "a"])


@pytest.mark.parametrize("n", [0, 1, 2, 3, 9, 11, 37, 1000])
def test_split_counts_sum_and_stay_within_one_study(n):
    counts = split_counts(n)
    assert sum(counts) == n
    assert all(abs(c - r * n) < 1 for c, r in zip(counts, (0.7, 0.1, 0.2)))


def test_reject_reason_must_be_known():
    with pytest.raises(ValueError, match="unknown reject reason"):
        Reject("s1", "bad_reason")


# --------------------------------------------------------------------------- IU X-Ray


def iu_xml(uid, images, findings=None, impression=None, indication="Positive TB test", comparison="None.", mesh=("normal",)):
    """An Open-i report with the release's structure; None sections are empty elements."""
    def section(label, text):
        return f'<AbstractText Label="{label}"/>' if text is None else f'<AbstractText Label="{label}">{escape(text)}</AbstractText>'

    parents = "".join(
        f'<parentImage id="{image_id}"><figureId>F{i + 1}</figureId><caption>Xray Chest PA and Lateral</caption>'
        f'<panel type="single"><url>/hadoop/storage/radiology/extract/{image_id}.jpg</url><imgModality>7</imgModality>'
        f"</panel></parentImage>"
        for i, image_id in enumerate(images)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<eCitation><meta type="rr"/>'
        f'<uId id="{uid}"/><pmcId id="{uid[3:]}"/><docSource>CXR</docSource>'
        '<MedlineCitation Owner="Indiana University" Status="supplied by publisher"><Article PubModel="Electronic">'
        "<Journal><JournalIssue><PubDate><Year>2013</Year></PubDate></JournalIssue></Journal>"
        "<ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle><Abstract>"
        + section("COMPARISON", comparison) + section("INDICATION", indication)
        + section("FINDINGS", findings) + section("IMPRESSION", impression)
        + "</Abstract></Article></MedlineCitation><MeSH>"
        + "".join(f"<major>{m}</major>" for m in mesh)
        + "</MeSH>" + parents + "</eCitation>"
    )


# (uid, [(image id, kind or None for "not on disk" or "corrupt")], findings, impression)
IU_STUDIES = [
    ("CXR1", [("CXR1_1_IM-0001-3001", "lateral"), ("CXR1_1_IM-0001-4001", "frontal")],
     "The cardiac silhouette and mediastinum size are within normal limits. There are no XXXX of a pleural effusion.",
     "Normal chest x-XXXX."),
    ("CXR2", [("CXR2_IM-0652-1001", "frontal16"), ("CXR2_IM-0652-2001", "lateral16")],
     "Borderline cardiomegaly. Midline sternotomy XXXX. Enlarged pulmonary arteries.",
     "1. No acute pulmonary findings.\n2. Stable sternotomy XXXX."),
    ("CXR3", [("CXR3_IM-1384-1001", "frontal"), ("CXR3_IM-1384-2001", "lateral")], None, "XXXX."),
    ("CXR4", [("CXR4_IM-2050-1001", "frontal"), ("CXR4_IM-2050-2001", None)], "Lungs are clear.", "Normal."),
    ("CXR5", [("CXR5_IM-2117-1001", "frontal")], None, "No active disease."),
    ("CXR6", [("CXR6_IM-2192-1001", "lateral")], "Heart size normal.", "Negative."),
    ("CXR7", [("CXR7_IM-0700-1001", "frontal"), ("CXR7_IM-0700-2001", "lateral"), ("CXR7_IM-0700-3001", "frontal")],
     "XXXX XXXX are intact. No pneumothorax.", "No acute disease."),
    ("CXR9", [("CXR9_IM-0900-1001", "frontal"), ("CXR9_IM-0900-2001", "corrupt")], "Clear.", "Normal."),
    ("CXR10", [], "Clear lungs.", "Normal."),
]


@pytest.fixture
def iu_tree(tmp_path):
    reports, images = tmp_path / "ecgen-radiology", tmp_path / "NLMCXR_png"
    reports.mkdir()
    images.mkdir()
    for seed, (uid, imgs, findings, impression) in enumerate(IU_STUDIES):
        (reports / f"{uid[3:]}.xml").write_text(iu_xml(uid, [i for i, _ in imgs], findings, impression))
        for image_id, kind in imgs:
            if kind == "corrupt":
                (images / f"{image_id}.png").write_bytes(b"not a png at all")
            elif kind is not None:
                save_png(images / f"{image_id}.png", kind.removesuffix("16"), bits=16 if kind.endswith("16") else 8, seed=seed)
    (reports / "8.xml").write_text("<eCitation><uId id='CXR8'")  # truncated download
    return reports, images


def test_iu_xray_frontal_policy(iu_tree, tmp_path):
    reports, images = iu_tree
    out = tmp_path / "out"
    prepare_iu_xray(reports, images, out, seed=3, progress=False)
    studies = {s.study_id: s for s in read_manifest(out / "manifest.jsonl")}
    assert list(studies) == ["CXR1", "CXR2", "CXR5", "CXR7"]
    # views by symmetry: CXR1 lists its lateral first; CXR5 (single image) is frontal by the
    # calibrated threshold; CXR7 has two frontal images
    assert [Path(r.path).name for r in studies["CXR1"].images] == ["CXR1_1_IM-0001-4001.png"]
    assert [r.view for r in studies["CXR7"].images] == ["FRONTAL", "FRONTAL"]
    assert [Path(r.path).name for r in studies["CXR7"].images] == ["CXR7_IM-0700-1001.png", "CXR7_IM-0700-3001.png"]
    assert studies["CXR2"].images[0].path == str((images / "CXR2_IM-0652-1001.png").resolve())  # absolute: not under out
    cxr1 = studies["CXR1"]
    assert cxr1.report.findings == "The cardiac silhouette and mediastinum size are within normal limits. There are no of a pleural effusion."
    assert cxr1.report.impression == "Normal chest x."
    assert cxr1.report.text == f"FINDINGS: {cxr1.report.findings} IMPRESSION: Normal chest x."
    assert studies["CXR2"].report.impression == "No acute pulmonary findings. Stable sternotomy."
    assert studies["CXR5"].report.text == "IMPRESSION: No active disease."
    assert studies["CXR7"].report.findings == "are intact. No pneumothorax."
    assert cxr1.labels == empty_labels()
    assert cxr1.meta["subject_id"] == "CXR1" and cxr1.meta["source"] == "iu-xray"
    assert cxr1.meta["indication"] == "Positive TB test" and cxr1.meta["comparison"] == "None."
    assert cxr1.meta["mesh_major"] == ["normal"] and cxr1.meta["image_ids"] == ["CXR1_1_IM-0001-4001"]
    # split: seeded over every readable report, rejected ones included
    expected = assign_splits([uid for uid, *_ in IU_STUDIES], seed=3)
    assert {sid: s.split for sid, s in studies.items()} == {sid: expected[sid] for sid in studies}

    rejects = read_jsonl(out / "rejects.jsonl")
    assert [(r["study_id"], r["reason"]) for r in rejects] == [
        ("8", "report_unreadable"),
        ("CXR3", "no_report_text"),
        ("CXR4", "image_missing"),
        ("CXR9", "image_unreadable"),
        ("CXR10", "no_images"),
        ("CXR6", "no_frontal_view"),
    ]
    assert rejects[2]["detail"] == "CXR4_IM-2050-2001.png"
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["studies"] == 4 and summary["rejected"] == 6 and summary["input_studies"] == 10
    assert sum(summary["splits"].values()) == 4 and summary["views"] == {"FRONTAL": 5}
    assert summary["options"]["view_source"] == "symmetry" and 0.7 < summary["symmetry_threshold"] < 0.85


def test_iu_xray_all_views_keeps_split_and_orders_frontal_first(iu_tree, tmp_path):
    reports, images = iu_tree
    out = tmp_path / "iu"  # images are under tmp_path, not under out
    prepare_iu_xray(reports, images, tmp_path / "f", progress=False)
    frontal = {s.study_id: s.split for s in read_manifest(tmp_path / "f" / "manifest.jsonl")}
    prepare_iu_xray(reports, images, out, views="all", progress=False)
    studies = {s.study_id: s for s in read_manifest(out / "manifest.jsonl")}
    assert {sid: s.split for sid, s in studies.items()} == frontal
    assert [(Path(r.path).name, r.view) for r in studies["CXR1"].images] == [
        ("CXR1_1_IM-0001-4001.png", "FRONTAL"), ("CXR1_1_IM-0001-3001.png", "LATERAL")]
    assert [r.view for r in studies["CXR7"].images] == ["FRONTAL", "FRONTAL", "LATERAL"]
    assert ("CXR6", "no_frontal_view") in rejects_of(out)


def test_iu_xray_relative_paths_when_images_are_inside_out(iu_tree, tmp_path):
    reports, images = iu_tree
    prepare_iu_xray(reports, images, tmp_path, progress=False)
    study = read_manifest(tmp_path / "manifest.jsonl")[0]
    assert study.images[0].path == "NLMCXR_png/CXR1_1_IM-0001-4001.png"
    assert study.image_paths(tmp_path)[0].is_file()


def _annotation_entry(entry_id, split):
    return {"id": entry_id, "report": "text", "image_path": [f"{entry_id}/0.png", f"{entry_id}/1.png"], "split": split}


def test_iu_xray_annotation_split(iu_tree, tmp_path):
    reports, images = iu_tree
    # a study whose two images carry different R2Gen ids, listed in different splits
    (reports / "12.xml").write_text(iu_xml("CXR12", ["CXR12_IM-1200-1001", "CXR12_IM-1201-2001"], "Clear.", "Normal."))
    annotation = tmp_path / "annotation.json"
    annotation.write_text(json.dumps({
        "train": [_annotation_entry("CXR1_1_IM-0001", "train"), _annotation_entry("CXR3_IM-1384", "train"),
                  _annotation_entry("CXR12_IM-1200", "train")],
        "val": [_annotation_entry("CXR2_IM-0652", "val")],
        "test": [_annotation_entry("CXR7_IM-0700", "test"), _annotation_entry("CXR999_IM-0001", "test"),
                 _annotation_entry("CXR12_IM-1201", "test")],
    }))
    out = tmp_path / "out"
    prepare_iu_xray(reports, images, out, annotation=annotation, progress=False)
    assert {s.study_id: s.split for s in read_manifest(out / "manifest.jsonl")} == {"CXR1": "train", "CXR2": "val", "CXR7": "test"}
    assert read_manifest(out / "manifest.jsonl")[0].meta["annotation_id"] == "CXR1_1_IM-0001"
    assert rejects_of(out) == [
        ("8", "report_unreadable"),
        ("CXR3", "no_report_text"),
        ("CXR4", "not_in_annotation"),
        ("CXR5", "not_in_annotation"),
        ("CXR6", "not_in_annotation"),
        ("CXR9", "not_in_annotation"),
        ("CXR10", "no_images"),
        ("CXR12", "annotation_conflict"),
        ("CXR999_IM-0001", "annotation_unmatched"),
    ]
    assert json.loads((out / "prepare_summary.json").read_text())["options"]["seed"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"train": [], "dev": []}', r"keys from \['train', 'val', 'test'\], found \['dev', 'train'\]"),
        ('{"train": [{"id": "CXR1_1_IM-0001", "split": "test"}]}', r"train\[0\] \(CXR1_1_IM-0001\) says split 'test'"),
        ('{"train": [{"id": "A"}], "test": [{"id": "A"}]}', r"id 'A' is in both 'train' and 'test'"),
        ('{"train": [{"report": "x"}]}', r"train\[0\] has no string 'id'"),
        ("[1, 2", r"not readable JSON"),
    ],
)
def test_iu_xray_bad_annotation(iu_tree, tmp_path, content, message):
    annotation = tmp_path / "annotation.json"
    annotation.write_text(content)
    with pytest.raises(RadllmError, match=message):
        prepare_iu_xray(*iu_tree, tmp_path / "out", annotation=annotation, progress=False)


def test_iu_xray_projection_table_overrides_symmetry(iu_tree, tmp_path):
    reports, images = iu_tree
    table = tmp_path / "indiana_projections.csv"
    rows = [("1", "1_IM-0001-4001.dcm.png", "Frontal"), ("1", "1_IM-0001-3001.dcm.png", "Lateral"),
            ("2", "2_IM-0652-1001.dcm.png", "Frontal"), ("2", "2_IM-0652-2001.dcm.png", "Lateral"),
            ("5", "5_IM-2117-1001.dcm.png", "Lateral"), ("6", "6_IM-2192-1001.dcm.png", "Frontal"),
            ("7", "7_IM-0700-2001.dcm.png", "Frontal"), ("7", "7_IM-0700-3001.dcm.png", "Lateral")]
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([("uid", "filename", "projection"), *rows])
    out = tmp_path / "out"
    prepare_iu_xray(reports, images, out, projections=table, views="all", progress=False)
    studies = {s.study_id: s for s in read_manifest(out / "manifest.jsonl")}
    assert list(studies) == ["CXR1", "CXR2", "CXR6", "CXR7"]
    # the table is believed even where the pixels disagree; ids absent from it stay UNKNOWN
    assert [(Path(r.path).name, r.view) for r in studies["CXR7"].images] == [
        ("CXR7_IM-0700-2001.png", "FRONTAL"), ("CXR7_IM-0700-1001.png", "UNKNOWN"), ("CXR7_IM-0700-3001.png", "LATERAL")]
    assert [r.view for r in studies["CXR6"].images] == ["FRONTAL"]
    assert "view_scores" not in studies["CXR6"].meta
    assert ("CXR5", "no_frontal_view") in rejects_of(out) and ("CXR9", "image_unreadable") in rejects_of(out)


def test_iu_xray_input_errors(iu_tree, tmp_path):
    reports, images = iu_tree
    with pytest.raises(RadllmError, match="images directory .*nowhere does not exist"):
        prepare_iu_xray(reports, tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(RadllmError, match="no \\*.xml reports"):
        prepare_iu_xray(images, images, tmp_path / "out")
    with pytest.raises(RadllmError, match="views must be one of"):
        prepare_iu_xray(reports, images, tmp_path / "out", views="lateral")
    (reports / "11.xml").write_text(iu_xml("CXR1", [], "a", "b"))
    with pytest.raises(RadllmError, match="11.xml: study id 'CXR1' already used by .*1.xml"):
        prepare_iu_xray(reports, images, tmp_path / "out", progress=False)


def test_cli_prepare_iu_xray(iu_tree, tmp_path, capsys):
    reports, images = iu_tree
    out = tmp_path / "cli"
    assert main(["prepare", "iu-xray", "--reports", str(reports), "--images", str(images), "--out", str(out), "--views", "all"]) == 0
    assert "4 studies" in capsys.readouterr().out
    assert len(read_manifest(out / "manifest.jsonl")) == 4
    assert main(["prepare", "iu-xray", "--reports", str(tmp_path / "none"), "--images", str(images), "--out", str(out)]) == 2
    assert "reports directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- MIMIC-CXR

MIMIC_REPORTS = {
    ("10000001", "50000001"): """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 COMPARISON:  ___.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.
""",
    ("10000001", "50000002"): """ FINAL REPORT
 HISTORY:  Shortness of breath.

 Findings and impression :
 Portable AP view of the chest.  Lungs are clear.
""",
    ("10000002", "50000003"): "FINDINGS: Lateral only.\nIMPRESSION: Normal.\n",
    ("10000003", "50000005"): "FINAL REPORT\nINDICATION: Cough.\nTECHNIQUE: PA view.\n",
    ("10000003", "50000006"): "FINDINGS: Clear.\n",
    ("10000004", "50000007"): """WET READ: ___ ___ ___ 4:25 PM
  No pneumothorax.
 ______________________________________________________________________________
                                 FINAL REPORT
 COMPARISON:  Chest radiograph ___.

 FINDINGS:  Right PICC tip in the low SVC.

 CONCLUSION:
 1. Right PICC in standard position
 2. No pneumothorax.
""",
}

# (dicom_id, subject, study, ViewPosition, jpg on disk?)
MIMIC_IMAGES = [
    ("d1-lat", "10000001", "50000001", "LATERAL", True),
    ("d1-pa", "10000001", "50000001", "PA", True),
    ("d1-ll", "10000001", "50000001", "LL", True),
    ("d1-none", "10000001", "50000001", "", True),
    ("d1-ap", "10000001", "50000001", "AP", True),
    ("d2-ap", "10000001", "50000002", "AP", True),
    ("d3-lat", "10000002", "50000003", "LATERAL", True),
    ("d4-pa", "10000002", "50000004", "PA", True),
    ("d5-pa", "10000003", "50000005", "PA", True),
    ("d6-pa", "10000003", "50000006", "PA", False),
    ("d7-pa", "10000004", "50000007", "PA", True),
    ("d9-pa", "10000005", "50000009", "PA", True),
]
MIMIC_SPLIT = {"50000001": "train", "50000002": "validate", "50000003": "train", "50000004": "train",
               "50000005": "test", "50000006": "train", "50000007": "test", "50000008": "train"}


def _write_table(path: Path, header, rows):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def mimic_tree(tmp_path):
    root, reports = tmp_path / "mimic-cxr-jpg", tmp_path / "mimic-cxr"
    root.mkdir()
    _write_table(
        root / "mimic-cxr-2.0.0-metadata.csv.gz",
        ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns", "StudyDate"],
        [(d, subj, study, "CHEST (PA AND LAT)", view, 8, 8, "21800506") for d, subj, study, view, _ in MIMIC_IMAGES],
    )
    split_rows = [(d, study, subj, MIMIC_SPLIT[study]) for d, subj, study, *_ in MIMIC_IMAGES if study in MIMIC_SPLIT]
    split_rows.append(("d8-pa", "50000008", "10000005", "train"))  # a study the metadata lacks
    _write_table(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    chexpert_columns = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
                        "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
                        "Pneumothorax", "Support Devices"]
    first = {"Cardiomegaly": "1.0", "Edema": "-1.0", "Pneumothorax": "0.0"}
    last = {"No Finding": "1.0"}
    _write_table(
        root / "mimic-cxr-2.0.0-chexpert.csv.gz",
        ["subject_id", "study_id", *chexpert_columns],
        [("10000001", "50000001", *(first.get(c, "") for c in chexpert_columns)),
         ("10000004", "50000007", *(last.get(c, "") for c in chexpert_columns))],
    )
    for d, subj, study, _, on_disk in MIMIC_IMAGES:
        if on_disk:
            folder = root / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((chest("frontal", 16, 16) * 255).astype(np.uint8)).save(folder / f"{d}.jpg")
    for (subj, study), text in MIMIC_REPORTS.items():
        path = reports / "files" / f"p{subj[:2]}" / f"p{subj}" / f"s{study}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root, reports


def test_mimic_cxr_frontal_policy(mimic_tree, tmp_path):
    root, reports = mimic_tree
    out = tmp_path / "out"
    prepare_mimic_cxr(root, out, reports_root=reports, progress=False)
    studies = {s.study_id: s for s in read_manifest(out / "manifest.jsonl")}
    assert list(studies) == ["s50000001", "s50000002", "s50000007"]
    s1, s2, s7 = studies.values()
    assert [(Path(r.path).name, r.view) for r in s1.images] == [("d1-pa.jpg", "PA"), ("d1-ap.jpg", "AP")]
    assert s1.images[0].path == str((root / "files/p10/p10000001/s50000001/d1-pa.jpg").resolve())
    assert (s1.split, s2.split, s7.split) == ("train", "val", "test")
    assert s1.report.findings == (
        "There is no focal consolidation, pleural effusion or pneumothorax. "
        "Bilateral nodular opacities that most likely represent nipple shadows."
    )
    assert s1.report.impression == "No acute cardiopulmonary process."
    assert s1.report.text == f"FINDINGS: {s1.report.findings} IMPRESSION: No acute cardiopulmonary process."
    assert s2.report.text == "FINDINGS: Portable AP view of the chest. Lungs are clear."
    assert s7.report.text == "FINDINGS: Right PICC tip in the low SVC. IMPRESSION: Right PICC in standard position. No pneumothorax."
    expected = {name: None for name in OBSERVATIONS} | {"Cardiomegaly": 1, "Edema": -1, "Pneumothorax": 0}
    assert s1.labels == expected and list(s1.labels) == list(OBSERVATIONS)
    assert s2.labels == empty_labels()  # no CheXpert row
    assert s7.labels == empty_labels() | {"No Finding": 1}
    assert s1.meta == {
        "source": "mimic-cxr", "subject_id": "p10000001", "study_date": "21800506",
        "indication": "F with new onset ascites // eval for infection", "comparison": "", "dicom_ids": ["d1-pa", "d1-ap"],
    }
    assert s2.meta["indication"] == "Shortness of breath."
    assert s7.meta["comparison"] == "Chest radiograph."

    rejects = read_jsonl(out / "rejects.jsonl")
    assert [(r["study_id"], r["reason"]) for r in rejects] == [
        ("s50000003", "no_frontal_view"),
        ("s50000004", "report_missing"),
        ("s50000005", "no_report_text"),
        ("s50000006", "image_missing"),
        ("s50000008", "no_metadata"),
        ("s50000009", "no_split"),
    ]
    assert rejects[0]["detail"] == "d3-lat: LATERAL"
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["splits"] == {"train": 1, "val": 1, "test": 1} and summary["input_studies"] == 9
    assert summary["views"] == {"AP": 2, "PA": 2} and summary["studies_without_labels"] == 1
    assert summary["images_not_used_by_view"] == {"(missing)": 1, "LATERAL": 1, "LL": 1}
    assert summary["reject_reasons"] == {r: 1 for r in ["image_missing", "no_frontal_view", "no_metadata", "no_report_text", "no_split", "report_missing"]}


def test_mimic_cxr_frontal_lateral_policy_reports_under_root(mimic_tree, tmp_path):
    root, reports = mimic_tree
    for txt in (reports / "files").rglob("*.txt"):  # reports and images share one root
        txt.rename(root / txt.relative_to(reports))
    (root / "mimic-cxr-2.0.0-chexpert.csv.gz").unlink()  # labels are optional
    prepare_mimic_cxr(root, root, views="frontal+lateral", progress=False)
    studies = {s.study_id: s for s in read_manifest(root / "manifest.jsonl")}
    assert [(r.path, r.view) for r in studies["s50000001"].images] == [
        ("files/p10/p10000001/s50000001/d1-pa.jpg", "PA"), ("files/p10/p10000001/s50000001/d1-ap.jpg", "AP"),
        ("files/p10/p10000001/s50000001/d1-lat.jpg", "LATERAL"), ("files/p10/p10000001/s50000001/d1-ll.jpg", "LL")]
    assert all(s.labels == empty_labels() for s in studies.values())
    assert ("s50000003", "no_frontal_view") in rejects_of(root)  # a lateral alone is still not enough
    summary = json.loads((root / "prepare_summary.json").read_text())
    assert summary["images_not_used_by_view"] == {"(missing)": 1} and summary["studies_without_labels"] is None


def test_mimic_cxr_table_errors(mimic_tree, tmp_path):
    root, reports = mimic_tree
    (root / "mimic-cxr-2.0.0-split.csv").unlink()
    with pytest.raises(RadllmError, match="table 'mimic-cxr-2.0.0-split' not found"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)
    _write_table(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], [("d1", "1", "2", "dev")])
    with pytest.raises(RadllmError, match=r"split.csv:2: split 'dev'"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)
    _write_table(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], [("d1", "1", "2", "train"), ("d2", "1")])
    with pytest.raises(RadllmError, match=r"split.csv:3: a row of 2 field\(s\) under a header of 4; expected 4 fields"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)
    _write_table(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], [("d1", "1", "2", "train", "x")])
    with pytest.raises(RadllmError, match=r"split.csv:2: a row of 5 field\(s\) under a header of 4"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)
    _write_table(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "split"], [])
    with pytest.raises(RadllmError, match=r"missing column\(s\) \['subject_id'\]"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)
    _write_table(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], [])
    _write_table(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *OBSERVATIONS],
                 [("1", "2", *(["2.0"] + [""] * 13))])
    with pytest.raises(RadllmError, match=r"chexpert.csv.gz:2: bad label value"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)
    (root / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(RadllmError, match="cannot be read as a CSV table"):
        prepare_mimic_cxr(root, tmp_path / "out", reports_root=reports)


def test_cli_prepare_mimic_cxr(mimic_tree, tmp_path, capsys):
    root, reports = mimic_tree
    out = tmp_path / "cli"
    assert main(["prepare", "mimic-cxr", "--root", str(root), "--reports", str(reports), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 studies (train 1, val 1, test 1)" in printed and "6 rejected" in printed
    assert main(["prepare", "mimic-cxr", "--root", str(tmp_path / "none"), "--out", str(out)]) == 2


@pytest.mark.parametrize("with_table", [False, True])
def test_iu_xray_huge_image_header_is_a_reject_not_a_crash(iu_tree, tmp_path, with_table):
    """A PNG whose header claims 100000² pixels: Pillow's DecompressionBombError used to escape."""
    from test_imaging import png_header_only

    reports, images = iu_tree
    (images / "CXR5_IM-2117-1001.png").write_bytes(png_header_only(100_000, 100_000))
    table = None
    if with_table:  # views from the table: files are only verified, not decoded
        table = tmp_path / "projections.csv"
        table.write_text("uid,filename,projection\n5,5_IM-2117-1001.dcm.png,Frontal\n")
    out = tmp_path / "out"
    prepare_iu_xray(reports, images, out, projections=table, progress=False)
    rejects = {r["study_id"]: r for r in read_jsonl(out / "rejects.jsonl")}
    assert rejects["CXR5"]["reason"] == "image_unreadable"
    detail = rejects["CXR5"]["detail"]
    assert detail.startswith("CXR5_IM-2117-1001.png: ") and ("decompression bomb" in detail or "header claims" in detail)
    assert "CXR5" not in {s.study_id for s in read_manifest(out / "manifest.jsonl")}
