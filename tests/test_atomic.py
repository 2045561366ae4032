"""Atomic writes leave either the old or the new artifact, never a partial one."""

import os
import stat

import pytest

from radllm import atomic


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "out.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_directory_swap_and_failure(tmp_path):
    target = tmp_path / "model"
    with atomic.atomic_directory(target) as tmp:
        (tmp / "w.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(target) as tmp:
            (tmp / "w.txt").write_text("v2-partial")
            raise RuntimeError("killed mid-save")
    assert (target / "w.txt").read_text() == "v1"
    with atomic.atomic_directory(target) as tmp:
        (tmp / "w.txt").write_text("v2")
    assert (target / "w.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with pytest.raises(FileExistsError):
        with atomic.atomic_directory(target, overwrite=False) as tmp:
            pass


def test_written_file_and_directory_get_umask_permissions_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "metrics.json", "{}")
        with atomic.atomic_directory(tmp_path / "model") as tmp:
            (tmp / "w").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
