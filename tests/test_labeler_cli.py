"""`radllm label`: input formats, id fields kept, errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radllm.cli import main
from radllm.labeler import label_report
from radllm.labels import OBSERVATIONS
from radllm.manifest import ImageRef, Report, Study, write_manifest


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_with_text_or_report_keeps_ids(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [
        {"study_id": "s1", "subject_id": 7, "text": "No pleural effusion. Possible pneumonia.", "extra": "dropped"},
        {"id": "x", "report": "Moderate cardiomegaly."},
        {"report": "No pneumothorax."},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["label", str(src), "--out", str(out), "--no-progress"]) == 0
    got = _read(out)
    assert [{k: v for k, v in g.items() if k != "labels"} for g in got] == [
        {"study_id": "s1", "subject_id": 7},
        {"id": "x"},
        {"line": 3},
    ]
    assert got[0]["labels"]["Pleural Effusion"] == 0 and got[0]["labels"]["Pneumonia"] == -1
    assert got[1]["labels"]["Cardiomegaly"] == 1
    assert all(list(g["labels"]) == list(OBSERVATIONS) for g in got)


def test_text_file_one_report_per_line(tmp_path: Path) -> None:
    src = tmp_path / "reports.txt"
    src.write_text("No effusion.\n\nSmall left pneumothorax.\n")
    out = tmp_path / "out.jsonl"
    assert main(["label", str(src), "--out", str(out), "--no-progress"]) == 0
    got = _read(out)
    assert [g["line"] for g in got] == [1, 3]
    assert got[1]["labels"] == label_report("Small left pneumothorax.")


def test_manifest_input(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(
        manifest,
        [
            Study("a", [ImageRef("a.png", "PA")], Report(findings="No pneumothorax.", impression="Mild edema.", text="")),
            Study("b", [ImageRef("b.png", "PA")], Report(text="FINDINGS: Possible effusion.")),
        ],
    )
    out = tmp_path / "out.jsonl"
    assert main(["label", str(manifest), "--out", str(out), "--no-progress"]) == 0
    got = {g["study_id"]: g["labels"] for g in _read(out)}
    assert got["a"]["Pneumothorax"] == 0 and got["a"]["Edema"] == 1  # sections joined when text is empty
    assert got["b"]["Pleural Effusion"] == -1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "txt": "x"}\n', "no report text"),
        ("{not json\n", "not valid JSON"),
        ('[1, 2]\n', "expected a JSON object"),
        ('{"text": 5}\n', "expected a string"),
    ],
)
def test_bad_input_exits_2_naming_the_line(tmp_path: Path, capsys, content: str, message: str) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "No effusion."}\n' + content)
    out = tmp_path / "out.jsonl"
    assert main(["label", str(src), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2" in err and message in err
    assert not out.exists()  # atomic: nothing half-written


def test_missing_input_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["label", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
