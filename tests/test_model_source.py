"""Model sources: local directories by default, Hugging Face Hub repo ids with `hub_download: true`.

The Hub is simulated by a local Hugging Face cache in the layout `huggingface_hub` writes
(`models--owner--name/refs/main` + `snapshots/<commit>/`) with the library in offline mode, so
`snapshot_download` runs for real and nothing is fetched.
"""

from __future__ import annotations

import shutil

import huggingface_hub.constants
import pytest
from training_fixtures import make_training_artifacts, write_train_config

from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.training.config import TrainConfig
from radllm.training.preflight import preflight

REPO = "radllm-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_training_artifacts(tmp_path_factory.mktemp("hub"), n_studies=12)


@pytest.fixture
def hub_cache(artifacts, tmp_path, monkeypatch):
    repo = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(artifacts.pretrained, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return repo / "snapshots" / COMMIT


def config_with(artifacts, tmp_path, init: str, **extra) -> TrainConfig:
    model = {"init": init, "dtype": "float32", "attn_implementation": "sdpa"}
    return load_config(TrainConfig, write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run", model=model, **extra))


def test_local_directories_only_by_default_and_the_error_says_how_to_download(artifacts, tmp_path, hub_cache):
    with pytest.raises(RadllmError) as info:
        preflight(config_with(artifacts, tmp_path, REPO))
    assert "model.init" in str(info.value) and "set hub_download: true" in str(info.value)
    with pytest.raises(RadllmError, match="no such local path") as info:
        preflight(config_with(artifacts, tmp_path, str(tmp_path / "missing")))
    assert "hub_download" not in str(info.value)  # a path, not a repo id: no download hint


def test_hub_id_becomes_the_cached_snapshot_directory_everywhere(artifacts, tmp_path, hub_cache):
    config = config_with(artifacts, tmp_path, REPO, hub_download=True)
    preflight(config)
    assert config.model.init == str(hub_cache) and config.anchor_source == str(hub_cache)
    with pytest.raises(RadllmError, match="could not get it from the Hugging Face Hub"):
        preflight(config_with(artifacts, tmp_path, "radllm-test/not-cached", hub_download=True))
    with pytest.raises(RadllmError, match="neither a local path nor a Hugging Face Hub repo id"):
        preflight(config_with(artifacts, tmp_path, "../relative/missing/dir", hub_download=True))
