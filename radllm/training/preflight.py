"""Checks of a run config against the files it names, before any process group or model exists.

A typo'd path or a tokenizer built for another VQ-GAN must fail in a second with a message naming
the key and file, not after minutes of model loading on every rank (or, worse, train on silently
misread image tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from radllm.data.shards import ShardIndex, load_index
from radllm.errors import RadllmError
from radllm.training.config import TrainConfig
from radllm.training.ds_config import load_ds_json, zero_stage
from radllm.training.model_source import resolve_model_sources
from radllm.training.lora import check_lora_supported
from radllm.training.model import load_model_config
from radllm.vocab import load_tokenizer
from radllm.vocab_spec import SPEC_FILENAME, VisualVocabSpec, check_compatible, load_spec


@dataclass
class Preflight:
    """What the checks loaded anyway and the trainer reuses, so a run reads each once."""

    tokenizer: PreTrainedTokenizerBase
    spec: VisualVocabSpec
    ds_json: dict[str, Any]
    model_config: PretrainedConfig  # model.init's config.json, or model.architecture's
    index: ShardIndex  # data.shards/index.json
    fingerprint: str  # `TrainConfig.fingerprint()`: what every checkpoint of the run is checked against


def preflight(config: TrainConfig) -> Preflight:
    """Validate `config` and every artifact it names; Hub repo ids (`hub_download`) become local snapshot directories in `config`.

    Raises:
        RadllmError: naming the config key and file that is wrong.
    """
    config.validate()
    resolve_model_sources(config.model, config.anchor, config.hub_download)
    tokenizer, spec = load_tokenizer(_existing_dir(config.tokenizer, "tokenizer"))
    if tokenizer.pad_token_id is None:
        raise RadllmError(f"tokenizer = {config.tokenizer!r} has no pad token; rebuild it with radllm build-tokenizer")
    index = load_index(_existing_dir(config.data.shards, "data.shards"))
    check_compatible(spec, index.visual_vocab, str(Path(config.tokenizer) / SPEC_FILENAME), str(Path(config.data.shards) / "index.json"))
    for key, split in (("data.split", config.data.split), ("data.eval_split", config.data.eval_split)):
        if split is not None and (split not in index.splits or index.num_samples(split) == 0):
            raise RadllmError(f"{key} = {split!r}: {config.data.shards}/index.json has no samples in that split (splits: {sorted(index.splits)})")
    model_config = load_model_config(config.model)
    if config.model.init:
        init_dir = _existing_dir(config.model.init, "model.init")
        if (init_dir / SPEC_FILENAME).is_file():
            check_compatible(spec, load_spec(init_dir), str(Path(config.tokenizer) / SPEC_FILENAME), str(init_dir / SPEC_FILENAME))
    if config.model.init and model_config.vocab_size > spec.vocab_size:
        raise RadllmError(
            f"model.init = {config.model.init!r} has vocab_size {model_config.vocab_size}, more than the "
            f"{spec.vocab_size} rows the tokenizer's {SPEC_FILENAME} allows; use the tokenizer the model was trained with"
        )
    if config.anchor.lambda_reg > 0:
        anchor_dir = _existing_dir(config.anchor_source, "anchor.pretrained")
        if not any(anchor_dir.glob("model*.safetensors")):
            raise RadllmError(f"anchor.pretrained = {str(anchor_dir)!r}: no model*.safetensors weights there")
        same_as_init = config.model.init is not None and anchor_dir.resolve() == Path(config.model.init).resolve()
        anchor_vocab = (model_config if same_as_init else load_model_config(type(config.model)(init=str(anchor_dir)))).vocab_size
        if anchor_vocab > spec.vocab_size:
            raise RadllmError(f"anchor.pretrained = {str(anchor_dir)!r} has vocab_size {anchor_vocab} > the tokenizer's {spec.vocab_size}")
    if config.model.attn_implementation == "flex_attention" and not torch.cuda.is_available():
        raise RadllmError("model.attn_implementation = flex_attention trains on CUDA only (PyTorch's FlexAttention has no backward pass on CPU); use sdpa or auto")
    ds_json = load_ds_json(config.deepspeed)
    check_lora_supported(config.lora, zero_stage(ds_json), torch.cuda.is_available())
    if config.anchor.lambda_reg > 0 and zero_stage(ds_json) not in (1, 2, 3):
        raise RadllmError(f"anchor.lambda_reg > 0 needs a ZeRO stage 1-3 DeepSpeed config (fp32 master weights); {config.deepspeed} has stage {zero_stage(ds_json)}")
    return Preflight(tokenizer, spec, ds_json, model_config, index, config.fingerprint())


def _existing_dir(path: str | None, key: str) -> Path:
    if path is None or not Path(path).is_dir():
        raise RadllmError(f"{key} = {path!r}: no such directory")
    return Path(path)
