"""Every command fed malformed input: exit 2, a message naming the input, no traceback, nothing left behind.

Each row is (command line, the bad input written to IN, a regex the error must match). The command
runs in-process through `radllm.cli.main`, so any exception other than the documented `RadllmError`
fails the test with its traceback. After the run, the output location must not exist and no
temporary file may remain next to it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from radllm.cli import main as cli_main

GARBAGE = bytes(range(256)) * 4  # not UTF-8 (0x80 is a continuation byte with no start)


def manifest_line(**changes: object) -> bytes:
    study = {"study_id": "s1", "images": [{"path": "a.png", "view": "PA"}], "report": {"findings": "Clear.", "impression": "Normal.", "text": "Clear. Normal."}, "split": "test"}
    study.update(changes)
    return (json.dumps(study) + "\n").encode()


BAD_MANIFESTS = {
    "labels_list": (manifest_line(labels=[1, 0]), r"IN\.jsonl:1: 'labels' is a list; expected an object"),
    "meta_list": (manifest_line(meta=["x"]), r"IN\.jsonl:1: 'meta' is a list; expected an object"),
    "findings_null": (manifest_line(report={"findings": None, "impression": "Normal.", "text": ""}), r"IN\.jsonl:1: report\.findings is null; expected a string"),
    "images_paths_not_strings": (manifest_line(images=[{"path": 3}]), r"IN\.jsonl:1: 'images' must be a list of"),
    "study_id_null": (manifest_line(study_id=None), r"IN\.jsonl:1: 'study_id' is None; expected a non-empty string"),
    "garbage": (GARBAGE, r"IN\.jsonl: not UTF-8 text"),
    "not_json": (b'{"study_id": \n', r"IN\.jsonl:1: not valid JSON"),
}

PREDICTION = json.dumps({"task": "report", "study_id": "s1", "report": "Normal."}) + "\n"

# (case id, command line, bad input, error regex). In the command line W/ is the work directory:
# W/IN* is the bad input (a name without a suffix is a directory whose index.json holds the bad
# bytes), W/OUT where output would go, W/PRED a valid prediction file and W/REF a valid manifest.
CASES = [
    *[(f"evaluate_ref_{name}", ["evaluate", "--ref", "W/IN.jsonl", "--pred", "W/PRED", "--out", "W/OUT"], content, message)
      for name, (content, message) in BAD_MANIFESTS.items()],
    ("evaluate_pred_garbage", ["evaluate", "--ref", "W/REF", "--pred", "W/IN.jsonl", "--out", "W/OUT"], GARBAGE, r"IN\.jsonl: not UTF-8 text"),
    ("evaluate_perplexity_garbage", ["evaluate", "--ref", "W/REF", "--pred", "W/PRED", "--perplexity", "x=W/IN.json", "--out", "W/OUT"], GARBAGE,
     r"perplexity file .*IN\.json: not UTF-8 text"),
    ("label_garbage_jsonl", ["label", "W/IN.jsonl", "--out", "W/OUT", "--no-progress"], GARBAGE, r"IN\.jsonl: not UTF-8 text"),
    ("label_garbage_text", ["label", "W/IN.txt", "--out", "W/OUT", "--no-progress"], GARBAGE, r"IN\.txt: not UTF-8 text"),
    ("label_findings_null", ["label", "W/IN.jsonl", "--out", "W/OUT", "--no-progress"], manifest_line(report={"findings": None, "impression": "x"}),
     r"IN\.jsonl:1: report\.findings is null"),
    ("image_convert_garbage", ["image-convert", "W/IN.png", "W/OUT"], GARBAGE, r"IN\.png: cannot decode image"),
    ("vq_train_config_garbage", ["vq-train", "--config", "W/IN.yaml"], GARBAGE, r"config file .*IN\.yaml: not UTF-8 text"),
    ("cxr_encoder_config_garbage", ["train-cxr-encoder", "--config", "W/IN.yaml"], GARBAGE, r"config file .*IN\.yaml: not UTF-8 text"),
    ("vq_train_config_nan", ["vq-train", "--config", "W/IN.yaml"], b"data:\n  manifest: m\noutput_dir: OUT\noptim:\n  lr: .nan\n",
     r"IN\.yaml: optim\.lr = nan; expected a finite number"),
    ("verify_shards_index_garbage", ["verify-shards", "W/IN"], GARBAGE, r"index\.json: not UTF-8 text"),
    ("baselines_index_garbage", ["baselines", "--shards", "W/IN", "--out", "W/OUT"], GARBAGE, r"index\.json: not UTF-8 text"),
    ("demo_table_metrics_garbage", ["demo-table", "--metrics", "W/IN.json"], GARBAGE, r"metrics file .*IN\.json: not UTF-8 text"),
]


@pytest.mark.parametrize("argv, content, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_is_a_clear_error_with_nothing_left_behind(tmp_path, capsys, argv, content, message):
    work = tmp_path / "work"
    work.mkdir()
    (name,) = {a.split("W/")[1] for a in argv if "W/IN" in a}
    if "." in name:
        (work / name).write_bytes(content)
    else:
        (work / name).mkdir()
        (work / name / "index.json").write_bytes(content)
    (work / "PRED").write_text(PREDICTION)
    (work / "REF").write_bytes(manifest_line())
    before = set(work.rglob("*"))
    assert cli_main([a.replace("W/", f"{work}/") for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"radllm {argv[0]}: error: " in err
    assert re.search(message, err), err
    assert set(work.rglob("*")) == before, "a partial output or temporary file was left behind"


def test_sigterm_during_label_removes_the_temporary_output(tmp_path):
    """`radllm label` killed mid-write: the atomic writer's temp file goes with it, no output appears."""
    reports = tmp_path / "reports.txt"
    reports.write_text("Moderate cardiomegaly with a small left pleural effusion. No pneumothorax.\n" * 200_000)
    out = tmp_path / "labels.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "radllm", "label", str(reports), "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".labels.jsonl.*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    temp = list(tmp_path.glob(".labels.jsonl.*.tmp"))
    assert temp and proc.poll() is None, "the labeler finished (or never started writing) before it could be signalled"
    time.sleep(0.3)  # let it write part of the file
    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports.txt"]
