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

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import PretrainedConfig

from radllm.atomic import atomic_directory
from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.tasks.image_generation import IMAGE_CONDITION_KEY
from radllm.training.checkpoint import is_complete
from radllm.training.config import TrainConfig
from radllm.training.model import compute_dtype, load_model_config
from radllm.training.safe_checkpoint import check_checkpoint_files, weights_only_loading
from radllm.vocab import load_tokenizer
from radllm.vocab_spec import SPEC_FILENAME

LORA_MODES = ("merge", "adapter")


def export_config(config: TrainConfig, vocab_size: int, dtype: torch.dtype) -> PretrainedConfig:
    """The trained model's HF config: the source config with the extended vocabulary and ids."""
    model_config = load_model_config(config.model)
    tokenizer, _ = load_tokenizer(config.tokenizer)
    model_config.vocab_size = vocab_size
    model_config.pad_token_id = tokenizer.pad_token_id
    model_config.bos_token_id = tokenizer.bos_token_id
    model_config.eos_token_id = tokenizer.eos_token_id
    model_config.dtype = dtype
    model_config.use_cache = True  # for generation; the trainer turns it off itself
    setattr(model_config, IMAGE_CONDITION_KEY, config.tasks.image_condition)  # generation's default image prompt
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


def export_from_engine(engine: Any, config: TrainConfig, vocab_size: int, dtype: torch.dtype, rank: int) -> Path | None:
    """Gather the engine's weights and write them (rank 0). Call on every rank (ZeRO-3 gathers are collective)."""
    if config.lora.enabled:
        raise RadllmError("LoRA runs are exported from their checkpoint: radllm export --checkpoint DIR --lora merge|adapter")
    if engine.zero_optimization_stage() == 3:
        state_dict = engine._zero3_consolidated_16bit_state_dict()
    else:
        state_dict = engine.module.state_dict()
    if rank != 0:
        return None
    return write_hf_model(state_dict, export_config(config, vocab_size, dtype), config.tokenizer, config.export_path)


def run_config_of(checkpoint: Path) -> TrainConfig:
    """The merged config a checkpoint's run wrote (`run_dir/config.yaml`)."""
    path = checkpoint.parent.parent / "config.yaml"
    if not path.is_file():
        raise RadllmError(f"{checkpoint}: no {path} next to its checkpoints/ directory; export needs the run's config")
    return load_config(TrainConfig, path)


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, lora_mode: str = "merge") -> Path:
    """Offline export of a complete checkpoint (see the module docstring).

    Raises:
        RadllmError: an incomplete checkpoint, an unknown LoRA mode, or a missing run config.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    checkpoint = Path(checkpoint)
    if not (checkpoint.is_dir() and is_complete(checkpoint)):
        raise RadllmError(f"--checkpoint {checkpoint}: not a complete checkpoint directory")
    if lora_mode not in LORA_MODES:
        raise RadllmError(f"--lora {lora_mode!r}: expected one of {list(LORA_MODES)}")
    check_checkpoint_files(checkpoint)  # before anything of the directory is trusted
    config = run_config_of(checkpoint)
    _, spec = load_tokenizer(config.tokenizer)
    dtype = compute_dtype(config.model.dtype, torch.cuda.is_available())
    with weights_only_loading(checkpoint):  # zero_to_fp32 unpickles with weights_only=False otherwise
        state_dict = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)
    model_config = export_config(config, spec.vocab_size, dtype)
    if not config.lora.enabled:
        return write_hf_model(state_dict, model_config, config.tokenizer, out_dir)
    return _export_lora_checkpoint(config, model_config, state_dict, spec, out_dir, lora_mode)


def _export_lora_checkpoint(config: TrainConfig, model_config: PretrainedConfig, state_dict: dict, spec: Any, out_dir: str | os.PathLike, mode: str) -> Path:
    """Rebuild the peft model on CPU, load the trained weights and hand it to `export_lora`."""
    from transformers import AutoModelForCausalLM

    from radllm.training.lora import apply_lora, export_lora
    from radllm.training.model import add_visual_rows, new_token_ids

    if config.model.init:
        model = AutoModelForCausalLM.from_pretrained(config.model.init, dtype=torch.float32, local_files_only=True, trust_remote_code=False)
    else:
        model = AutoModelForCausalLM.from_config(load_model_config(config.model))
    add_visual_rows(model, spec.vocab_size, config.model.new_row_noise, config.seed)
    # A QLoRA run's adapters go onto the full-precision base: the merge is a 16/32-bit model.
    model = apply_lora(model, replace(config.lora, quantize_4bit=False), new_token_ids(spec))
    trained_parts = ("lora_", "trainable_tokens")
    if config.lora.quantize_4bit:  # the checkpoint's frozen base is packed NF4; the pretrained files hold it exactly
        state_dict = {name: value for name, value in state_dict.items() if any(part in name for part in trained_parts)}
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    trained_missing = [name for name in missing if any(part in name for part in trained_parts)]
    if trained_missing or unexpected:
        raise RadllmError(f"checkpoint does not fit the LoRA model: missing {trained_missing[:5]}, unexpected {list(unexpected)[:5]}")
    setattr(model.config, IMAGE_CONDITION_KEY, getattr(model_config, IMAGE_CONDITION_KEY))  # the config a merge writes
    with atomic_directory(out_dir) as tmp:
        export_lora(model, tmp, mode)
        _add_tokenizer(config.tokenizer, tmp)
    return Path(out_dir)
