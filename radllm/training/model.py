"""The LLM for training: loaded (or built) under ZeRO-3 partitioning, with the visual vocabulary added.

Under ZeRO-3 no rank ever holds the whole model: `HfDeepSpeedConfig` is created before the model
and kept alive with it (transformers only holds a weak reference and checks it to decide whether
to load/build inside `deepspeed.zero.Init`), so parameters are partitioned as they are created.
The vocabulary is extended before `deepspeed.initialize`: `resize_token_embeddings` then
writes the new rows with `GatheredParameters(modifier_rank=0)` so every rank's partition
receives rank 0's values.

New rows (`<boi>`, `<eoi>`, `<img_k>` and the padding up to a multiple of 64) start at the
mean of the old rows plus small Gaussian noise seeded by (seed, token id): the same value on
every rank and for any world size, and reproducible later, which is how the L2 anchor can rebuild
their initial values (radllm.training.anchor) without storing them. An untied `lm_head` gets the
same treatment from its own old rows; a tied one shares the embedding matrix.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from radllm.errors import RadllmError
from radllm.modeling import select_attention_implementation
from radllm.training.config import ModelOptions
from radllm.vocab_spec import VisualVocabSpec

log = logging.getLogger(__name__)


def compute_dtype(option: str, cuda: bool) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU (`auto`), or what the config names."""
    if option == "auto":
        return torch.bfloat16 if cuda else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[option]


def attention_implementation(option: str) -> str:
    """flash_attention_2 when installed on CUDA, else sdpa (`auto`), or what the config names."""
    return select_attention_implementation() if option == "auto" else option


def load_model_config(options: ModelOptions) -> PretrainedConfig:
    """The HF config of `model.init` or `model.architecture` (read before the model, e.g. for bucket sizes)."""
    source = options.init or options.architecture
    assert source is not None  # the run config's validate(): exactly one of the two is set
    path = Path(source)
    if path.is_file():
        path = path.parent if path.name == "config.json" else path
    if not (path / "config.json").is_file():
        key = "model.init" if options.init else "model.architecture"
        raise RadllmError(f"{key} = {source!r}: no config.json there (expected a local Hugging Face model or config directory)")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise RadllmError(f"{path / 'config.json'}: not a usable transformers config: {err}") from err


def full_shape(param: torch.Tensor) -> torch.Size:
    """Shape of a parameter, also when ZeRO-3 has partitioned it (then `.shape` is empty)."""
    return getattr(param, "ds_shape", param.shape)


def new_row_values(old_rows: torch.Tensor, start: int, stop: int, noise: float, seed: int) -> torch.Tensor:
    """Initial values of rows [start, stop): mean of `old_rows` + noise·std(old_rows)·N(0, 1) seeded per row.

    Args:
        old_rows: [V_old, H] pretrained rows (any dtype; computed in fp32).
        start, stop: token ids of the new rows.
        noise: noise std relative to the old rows' std.
        seed: run seed; row `i`'s noise depends only on (seed, i).

    Returns:
        fp32 [stop - start, H].
    """
    old = old_rows.float()
    mean, scale = old.mean(dim=0), noise * old.std()
    rows = torch.empty(stop - start, old.shape[1])
    generator = torch.Generator()
    for offset, token_id in enumerate(range(start, stop)):
        generator.manual_seed(seed * 0x9E3779B1 + token_id)
        rows[offset] = mean + scale * torch.randn(old.shape[1], generator=generator)
    return rows


def _gathered(params: list[nn.Parameter]):
    """Full parameters for rank 0 to modify (a no-op context without ZeRO-3)."""
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0, enabled=any(hasattr(p, "ds_id") for p in params))


def add_visual_rows(model: PreTrainedModel, vocab_size: int, noise: float, seed: int) -> int:
    """Resize the embedding (and an untied head) to `vocab_size` rows; returns the old row count.

    Raises:
        RadllmError: the model already has more rows than the tokenizer's spec (wrong tokenizer).
    """
    embedding = model.get_input_embeddings()
    old = full_shape(embedding.weight)[0]
    if old == vocab_size:
        return old
    if old > vocab_size:
        raise RadllmError(
            f"the model has {old} embedding rows but the tokenizer's radllm.json says vocab_size = {vocab_size}; "
            "train with the tokenizer the model was extended with"
        )
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    weights = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not weights[0]:
        weights.append(head.weight)
    with _gathered(weights), torch.no_grad():
        for weight in weights:
            if weight.numel():  # rank 0 (or no ZeRO-3) holds the gathered full matrix
                weight[old:] = new_row_values(weight[:old], old, vocab_size, noise, seed).to(weight.dtype)
    return old


@dataclass
class LoadedModel:
    """The model plus what must live as long as it (see the module docstring)."""

    model: PreTrainedModel
    hf_ds_config: Any  # transformers' HfDeepSpeedConfig for ZeRO-3, else None; keep a reference!
    old_vocab_size: int  # embedding rows before the visual vocabulary was added
    attn_implementation: str
    dtype: torch.dtype


def load_model(
    options: ModelOptions,
    model_config: PretrainedConfig,
    vocab_size: int,
    ds_config: dict[str, Any],
    dtype: torch.dtype,
    seed: int,
    quantization_config: Any = None,
) -> LoadedModel:
    """Load `model.init` (or build `model.architecture`) partitioned for `ds_config`, with `vocab_size` rows.

    Call after the process group exists and before `deepspeed.initialize`. `model_config` is
    `load_model_config(options)` (the preflight's, not modified); `quantization_config` (QLoRA:
    `radllm.training.lora.quantization_config_4bit`) loads the pretrained weights quantised.
    """
    from transformers.integrations import HfDeepSpeedConfig

    hf_ds_config = HfDeepSpeedConfig(ds_config) if ds_config.get("zero_optimization", {}).get("stage", 0) == 3 else None
    implementation = attention_implementation(options.attn_implementation)
    config = copy.deepcopy(model_config)
    torch.manual_seed(seed)  # from-scratch init (zero.Init broadcasts rank 0's values anyway)
    if options.init:
        model = AutoModelForCausalLM.from_pretrained(
            options.init, dtype=dtype, attn_implementation=implementation, trust_remote_code=False, local_files_only=True,
            quantization_config=quantization_config,
        )
    elif quantization_config is not None:
        raise RadllmError("lora.quantize_4bit=true quantises pretrained weights: set model.init (a new model from model.architecture has none)")
    else:
        config.vocab_size = vocab_size  # a new model is built with the full vocabulary: no rows to add
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=implementation, trust_remote_code=False)
    old = add_visual_rows(model, vocab_size, options.new_row_noise, seed)
    model.config.use_cache = False
    if options.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    log.info("model: %s, %d -> %d vocabulary rows, attention %s, %s", type(model).__name__, old, vocab_size, implementation, dtype)
    return LoadedModel(model, hf_ds_config, old, implementation, dtype)


def vocab_parameter_names(model: nn.Module) -> set[str]:
    """Names of the embedding and (untied) output-head weights: the matrices with one row per token."""
    matrices = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None:
        matrices.append(head.weight)
    return {name for name, param in model.named_parameters() if any(param is m for m in matrices)}


def new_token_ids(spec: VisualVocabSpec) -> list[int]:
    """Ids of the tokens the visual vocabulary added: `<boi>`, `<eoi>` and every `<img_k>`."""
    return sorted({spec.boi_id, spec.eoi_id, *range(spec.token_offset, spec.token_offset + spec.codebook_size)})
