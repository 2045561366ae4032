"""Checkpoints never run code: a crafted `*.pt` pickle is refused by name before and during loading."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch

from radllm.cli import main as cli_main
from radllm.errors import RadllmError
from radllm.training.safe_checkpoint import check_checkpoint_files, weights_only_loading


class Touch:
    """Unpickling this calls `Path.touch(marker)`: a stand-in for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def crafted_checkpoint(root: Path, marker: Path) -> Path:
    """A complete-looking checkpoint whose model-states file would create `marker` when unpickled."""
    checkpoint = root / "checkpoints" / "step_0000002"
    checkpoint.mkdir(parents=True)
    torch.save({"module": {"w": torch.zeros(2)}, "payload": Touch(marker)}, checkpoint / "mp_rank_00_model_states.pt")
    (checkpoint / "COMPLETE").write_text("")
    (checkpoint.parent / "latest").write_text(checkpoint.name)
    return checkpoint


def test_the_crafted_file_really_runs_code_when_unpickled_normally(tmp_path):
    checkpoint = crafted_checkpoint(tmp_path, tmp_path / "control_marker")
    torch.load(checkpoint / "mp_rank_00_model_states.pt", weights_only=False)  # what DeepSpeed does
    assert (tmp_path / "control_marker").exists()


def test_check_names_the_file_and_the_globals(tmp_path):
    checkpoint = crafted_checkpoint(tmp_path, tmp_path / "marker")
    with pytest.raises(RadllmError, match=r"mp_rank_00_model_states\.pt: refused: its pickle imports \['builtins\.getattr', 'pathlib\.Path'"):
        check_checkpoint_files(checkpoint)
    assert not (tmp_path / "marker").exists()


def test_loads_inside_are_weights_only_even_when_the_caller_asks_otherwise(tmp_path):
    checkpoint = crafted_checkpoint(tmp_path, tmp_path / "marker")
    with pytest.raises(RadllmError, match=r"step_0000002: refused to unpickle a checkpoint file in weights-only mode"):
        with weights_only_loading(checkpoint):
            torch.load(checkpoint / "mp_rank_00_model_states.pt", weights_only=False)
    assert not (tmp_path / "marker").exists()
    safe = tmp_path / "safe.pt"
    torch.save({"w": torch.ones(3)}, safe)
    with weights_only_loading(checkpoint):
        assert torch.equal(torch.load(safe, weights_only=False)["w"], torch.ones(3))


def test_export_refuses_a_crafted_checkpoint_without_running_it(tmp_path, capsys):
    checkpoint = crafted_checkpoint(tmp_path, tmp_path / "marker")
    assert cli_main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert "mp_rank_00_model_states.pt: refused" in err and "Traceback" not in err
    assert not (tmp_path / "marker").exists() and not (tmp_path / "model").exists()
