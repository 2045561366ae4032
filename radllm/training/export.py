"""Write a trained model as a Hugging Face directory that plain transformers loads.

    radllm export --checkpoint runs/stage1/checkpoints/step_0001000 --out runs/stage1/model [--lora merge|adapter]

The directory holds `config.json`, `model.safetensors`, the tokenizer's files and `radllm.json`
(the visual vocab spec), so `AutoModelForCausalLM.from_pretrained(dir)` +
`AutoTokenizer.from_pretrained(dir)` work and stage 2 can start from it (`model.init`). Written
atomically: a killed export leaves the previous directory (if any) untouched.

Two sources of weights, one writer:
- at the end of training, `export_from_engine` gathers the 16-bit weights from the live ZeRO-3
  engine (one parameter at a time, to rank 0's CPU);
- offline, `export_checkpoint` rebuilds fp32 weights from a checkpoint's ZeRO shards with
  DeepSpeed's `zero_to_fp32` (no process group, no GPU) and casts them to the training dtype.
LoRA runs export through `radllm.training.lora.export_lora` (merged, or as a peft adapter).
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import PretrainedConfig, PreTrainedTokenizerBase

from radllm.atomic import atomic_directory
from radllm.errors import RadllmError
from radllm.tasks.image_generation import IMAGE_CONDITION_KEY
from radllm.training.checkpoint import is_complete, resolve_link
from radllm.training.config import ModelOptions, run_config_of
from radllm.training.lora import LoraSettings
from radllm.training.model import compute_dtype, load_model_config
from radllm.training.safe_checkpoint import check_checkpoint_files, weights_only_loading
from radllm.vocab import load_tokenizer
from radllm.vocab_spec import SPEC_FILENAME, VisualVocabSpec

LORA_MODES = ("merge", "adapter")


def export_config(
    source: PretrainedConfig, tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec, image_condition: str, dtype: torch.dtype
) -> PretrainedConfig:
    """The trained model's HF config: a copy of the source config (`load_model_config(model)`) with
    the tokenizer's extended vocabulary and ids.

    `image_condition` (`tasks.image_condition`) is stored as generation's default image prompt.
    """
    model_config = copy.deepcopy(source)
    model_config.vocab_size = spec.vocab_size
    model_config.pad_token_id = tokenizer.pad_token_id
    model_config.bos_token_id = tokenizer.bos_token_id
    model_config.eos_token_id = tokenizer.eos_token_id
    model_config.dtype = dtype
    model_config.use_cache = True  # for generation; the trainer turns it off itself
    setattr(model_config, IMAGE_CONDITION_KEY, image_condition)
    return model_config


def _add_tokenizer(tokenizer_dir: str | os.PathLike, out: Path) -> None:
    tokenizer, _ = load_tokenizer(tokenizer_dir)
    tokenizer.save_pretrained(out)
    shutil.copy(Path(tokenizer_dir) / SPEC_FILENAME, out / SPEC_FILENAME)


def write_hf_model(state_dict: dict[str, torch.Tensor], model_config: PretrainedConfig, tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write weights + config + tokenizer + radllm.json into `out_dir` atomically."""
    dtype = model_config.dtype if isinstance(model_config.dtype, torch.dtype) else getattr(torch, str(model_config.dtype))
    tensors = {name: value.detach().to("cpu", dtype).contiguous() for name, value in state_dict.items()}
    if getattr(model_config, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)  # stored once, as the embedding (HF convention)
    with atomic_directory(out_dir) as tmp:
        model_config.save_pretrained(tmp)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _add_tokenizer(tokenizer_dir, tmp)
    return Path(out_dir)


def export_from_engine(
    engine: Any, model_config: PretrainedConfig, tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike, rank: int
) -> Path | None:
    """Gather the engine's weights and write them with `write_hf_model` (rank 0; returns None elsewhere).

    Call on every rank (ZeRO-3 gathers are collective). A full fine-tune only: LoRA runs are
    exported from their checkpoint (`export_checkpoint`), where the peft model is rebuilt.
    """
    if engine.zero_optimization_stage() == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()
    else:
        state_dict = engine.module.state_dict()
    if rank != 0:
        return None
    return write_hf_model(state_dict, model_config, tokenizer_dir, out_dir)


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, lora_mode: str = "merge") -> Path:
    """Offline export of a complete checkpoint (see the module docstring).

    Raises:
        RadllmError: an incomplete checkpoint, an unknown LoRA mode, or a missing run config.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    checkpoint = resolve_link(Path(checkpoint))  # checkpoints/best: the step directory, whose name is DeepSpeed's tag
    if not (checkpoint.is_dir() and is_complete(checkpoint)):
        raise RadllmError(f"--checkpoint {checkpoint}: not a complete checkpoint directory")
    if lora_mode not in LORA_MODES:
        raise RadllmError(f"--lora {lora_mode!r}: expected one of {list(LORA_MODES)}")
    check_checkpoint_files(checkpoint)  # before anything of the directory is trusted
    config = run_config_of(checkpoint)
    tokenizer, spec = load_tokenizer(config.tokenizer)
    dtype = compute_dtype(config.model.dtype, torch.cuda.is_available())
    with weights_only_loading(checkpoint):  # zero_to_fp32 unpickles with weights_only=False otherwise
        state_dict = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)
    model_config = export_config(load_model_config(config.model), tokenizer, spec, config.tasks.image_condition, dtype)
    if not config.lora.enabled:
        return write_hf_model(state_dict, model_config, config.tokenizer, out_dir)
    from radllm.training.lora import export_lora

    model = _trained_lora_model(config.model, config.lora, config.seed, spec, state_dict)
    setattr(model.config, IMAGE_CONDITION_KEY, getattr(model_config, IMAGE_CONDITION_KEY))  # the config a merge writes
    with atomic_directory(out_dir) as tmp:
        export_lora(model, tmp, lora_mode)
        _add_tokenizer(config.tokenizer, tmp)
    return Path(out_dir)


def _trained_lora_model(
    model_options: ModelOptions, lora: LoraSettings, seed: int, spec: VisualVocabSpec, state_dict: dict[str, torch.Tensor]
) -> torch.nn.Module:
    """The run's peft model rebuilt on CPU (base, visual rows, adapters) with the checkpoint's trained weights loaded."""
    from transformers import AutoModelForCausalLM

    from radllm.training.lora import apply_lora
    from radllm.training.model import add_visual_rows, new_token_ids

    if model_options.init:
        model = AutoModelForCausalLM.from_pretrained(
            model_options.init, dtype=torch.float32, local_files_only=True, trust_remote_code=False
        )
    else:
        model = AutoModelForCausalLM.from_config(load_model_config(model_options))
    add_visual_rows(model, spec.vocab_size, model_options.new_row_noise, seed)
    # A QLoRA run's adapters go onto the full-precision base: the merge is a 16/32-bit model.
    model = apply_lora(model, replace(lora, quantize_4bit=False), new_token_ids(spec))
    trained_parts = ("lora_", "trainable_tokens")
    if lora.quantize_4bit:  # the checkpoint's frozen base is packed NF4; the pretrained files hold it exactly
        state_dict = {name: value for name, value in state_dict.items() if any(part in name for part in trained_parts)}
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    trained_missing = [name for name in missing if any(part in name for part in trained_parts)]
    if trained_missing or unexpected:
        raise RadllmError(f"checkpoint does not fit the LoRA model: missing {trained_missing[:5]}, unexpected {list(unexpected)[:5]}")
    return model
