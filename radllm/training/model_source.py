"""Where a run's models come from: local directories, or Hugging Face Hub repo ids when allowed.

GPU clusters often have no network, so by default `model.init`, `model.architecture` and
`anchor.pretrained` must be local directories, and every load passes `local_files_only=True`.
With `hub_download: true` a value that is not a local path may be a Hub repo id
(`meta-llama/Llama-2-7b-hf`): `resolve_model_sources` fetches its safetensors weights, configs
and tokenizer files (never pickled `*.bin` weights) into the local Hugging Face cache before
anything is loaded and puts the snapshot directory in the config, so the rest of the trainer,
the saved `config.yaml` and the checkpoints' config fingerprint all see a local directory (a
changed Hub revision is a different directory, and a resume from it is refused).
"""

from __future__ import annotations

import re
from pathlib import Path

from radllm.errors import RadllmError
from radllm.training.config import AnchorOptions, ModelOptions

#: What a snapshot needs for training: configs, safetensors weights, tokenizer files.
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def resolve_model_source(source: str, key: str, hub_download: bool) -> str:
    """A local directory for `source` (see the module docstring).

    Raises:
        RadllmError: naming `key`: not a local path and downloads are off (saying how to turn
            them on when `source` looks like a repo id), not a repo id, or the download failed.
    """
    if Path(source).exists():
        return source
    is_repo_id = bool(_REPO_ID.fullmatch(source))
    if not hub_download:
        hint = (
            f"; to download the Hugging Face Hub model {source!r} instead, set hub_download: true (needs network access)"
            if is_repo_id else ""
        )
        raise RadllmError(f"{key} = {source!r}: no such local path (models are read from local directories by default{hint})")
    if not is_repo_id:
        raise RadllmError(f"{key} = {source!r}: neither a local path nor a Hugging Face Hub repo id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id=source, allow_patterns=MODEL_FILES)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
        raise RadllmError(f"{key} = {source!r}: could not get it from the Hugging Face Hub ({type(err).__name__}: {err})") from err


def resolve_model_sources(model: ModelOptions, anchor: AnchorOptions, hub_download: bool) -> None:
    """Replace every model source of the run config's `model` and `anchor` sections by a local directory (in place)."""
    model.init = model.init and resolve_model_source(model.init, "model.init", hub_download)
    model.architecture = model.architecture and resolve_model_source(model.architecture, "model.architecture", hub_download)
    anchor.pretrained = anchor.pretrained and resolve_model_source(anchor.pretrained, "anchor.pretrained", hub_download)
