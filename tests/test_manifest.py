"""Manifest schema: validation errors name file, line and key; round trip through JSONL."""

import json

import pytest

from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, validate_labels
from radllm.manifest import ImageRef, Report, Study, looks_like_manifest, read_manifest, write_manifest


def _study(study_id="s1", **kw):
    return Study(study_id=study_id, images=[ImageRef("images/a.png", "PA")], report=Report("f", "i", "FINDINGS: f IMPRESSION: i"), **kw)


def test_round_trip_fills_all_observations(tmp_path):
    path = tmp_path / "m.jsonl"
    study = _study(labels=validate_labels({"Cardiomegaly": 1, "Edema": -1.0}, "x"), split="val")
    assert write_manifest(path, [study, _study("s2")]) == 2
    back = read_manifest(path)
    assert back[0] == study
    assert list(back[0].labels) == list(OBSERVATIONS)
    assert back[0].labels["Cardiomegaly"] == 1 and back[0].labels["Edema"] == -1 and back[0].labels["Fracture"] is None
    assert back[0].image_paths(tmp_path)[0] == tmp_path / "images" / "a.png"
    assert back[0].images[0].is_frontal


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"m\.jsonl:2: not valid JSON"),
        ('{"study_id": "x", "images": []}', r"m\.jsonl:2: missing key\(s\) \['report'\]"),
        ('{"study_id": "x", "images": [], "report": {}, "split": "dev"}', r"split 'dev'"),
        ('{"study_id": "x", "images": [], "report": {}, "labels": {"Cardiomegaly": 2}}', r"'Cardiomegaly' = 2"),
        ('{"study_id": "x", "images": [], "report": {}, "labels": {"Heart": 1}}', r"unknown observation"),
        ('{"study_id": "s1", "images": [], "report": {}}', r"duplicate study_id 's1'"),
    ],
)
def test_bad_lines_name_file_line_and_key(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(_study().to_json()) + "\n" + line + "\n")
    with pytest.raises(RadllmError, match=message):
        read_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(RadllmError, match="does not exist"):
        read_manifest(tmp_path / "none.jsonl")


def test_looks_like_manifest_reads_only_the_first_object(tmp_path):
    study = '{"study_id": "s1", "images": [], "report": {"findings": "", "impression": "", "text": "x"}}\n'
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n" + study + "not json at all\n")
    assert looks_like_manifest(manifest)
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"study_id": "s1", "report": "No effusion."}\n')
    assert not looks_like_manifest(preds)
    broken = tmp_path / "b.jsonl"
    broken.write_text("{broken\n")
    assert not looks_like_manifest(broken) and looks_like_manifest(broken, if_unparsable=True)
