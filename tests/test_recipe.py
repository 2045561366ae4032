"""The toolkit every trainer shares: LR schedule, RNG state, checkpoint directories, non-finite guard."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from radllm.errors import RadllmError
from radllm.recipe.checkpoint_dirs import checkpoints_dir, complete_checkpoints, rotate, step_of, tag_for
from radllm.recipe.nonfinite import check_nonfinite_streak
from radllm.recipe.rng import rng_state, set_rng_state
from radllm.recipe.schedule import warmup_cosine


def test_warmup_cosine_hand_values() -> None:
    assert warmup_cosine(0, 1.0, 4, 20, 0.1) == pytest.approx(0.25)
    assert warmup_cosine(3, 1.0, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(4, 1.0, 4, 20, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(12, 1.0, 4, 20, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(20, 1.0, 4, 20, 0.1) == pytest.approx(0.1)
    # The VQ-GAN's and CXR encoder's form: the rate itself, here decaying to zero.
    assert warmup_cosine(1, 3e-4, 4, 20, 0.0) == pytest.approx(3e-4 * 2 / 4)
    assert warmup_cosine(12, 3e-4, 4, 20, 0.0) == pytest.approx(3e-4 * 0.5)
    assert warmup_cosine(25, 3e-4, 4, 20, 0.0) == 0.0


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_through_json() -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _draws()
    saved = json.loads(json.dumps(rng_state()))
    expected = _draws()
    _draws()
    set_rng_state(saved)
    assert _draws() == expected
    # The LLM trainer's encoding, unchanged, so its checkpoints resume as before.
    assert isinstance(saved["torch"], str) and saved["numpy"][1]["dtype"] == "uint32" and len(saved["python"][1]) == 625


def test_rng_state_reads_the_older_vq_gan_encoding() -> None:
    """VQ-GAN checkpoints from before the shared module stored plain integer lists."""
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    old = {
        "torch": torch.get_rng_state().tolist(),
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
    }
    old = json.loads(json.dumps(old))
    expected = _draws()
    set_rng_state(old)
    assert _draws() == expected
    set_rng_state({})  # missing entries are left alone


def _step_dir(run_dir: Path, step: int, marker: str | None) -> Path:
    path = checkpoints_dir(run_dir) / tag_for(step)
    path.mkdir(parents=True)
    if marker:
        (path / marker).write_text("{}")
    return path


def test_checkpoint_dirs_list_complete_ones_by_step_and_rotate(tmp_path: Path) -> None:
    marker = "trainer_state.json"
    for step in (2, 4, 10, 12):
        _step_dir(tmp_path, step, marker)
    _step_dir(tmp_path, 3, None)  # a killed save, older than the newest complete one
    _step_dir(tmp_path, 14, None)  # a save in progress
    (checkpoints_dir(tmp_path) / ".step_0000016.abc.tmp").mkdir()  # an atomic write's temporary
    (checkpoints_dir(tmp_path) / "latest").write_text("step_0000012")
    assert tag_for(12) == "step_0000012" and step_of(Path("step_0000012")) == 12 and step_of(Path("latest")) is None
    assert [p.name for p in complete_checkpoints(tmp_path, marker)] == ["step_0000002", "step_0000004", "step_0000010", "step_0000012"]
    deleted = rotate(tmp_path, 2, marker)
    assert sorted(p.name for p in deleted) == ["step_0000002", "step_0000003", "step_0000004"]
    assert sorted(p.name for p in checkpoints_dir(tmp_path).iterdir()) == [
        ".step_0000016.abc.tmp", "latest", "step_0000010", "step_0000012", "step_0000014",
    ]
    assert complete_checkpoints(tmp_path / "none", marker) == [] and rotate(tmp_path / "none", 2, marker) == []
    # A protected checkpoint (the best) is never deleted, however old; the others rotate as before.
    _step_dir(tmp_path, 16, marker)
    deleted = rotate(tmp_path, 1, marker, protect=[checkpoints_dir(tmp_path) / "step_0000010"])
    assert sorted(p.name for p in deleted) == ["step_0000012", "step_0000014"]
    assert [p.name for p in complete_checkpoints(tmp_path, marker)] == ["step_0000010", "step_0000016"]


def test_nonfinite_streak_stops_the_run_at_the_limit() -> None:
    check_nonfinite_streak(2, 3, step=7, what="gradient", advice="check the data")
    expected = r"3 consecutive steps with a non-finite gradient \(last at step 8, .*= 3\); lower optim.lr, check the data"
    with pytest.raises(RadllmError, match=expected):
        check_nonfinite_streak(3, 3, step=8, what="gradient", advice="check the data")
