"""LoRA and QLoRA fine-tuning of the extended LLM through peft (and bitsandbytes for 4-bit bases).

Why: a full fine-tune of a 7B model under ZeRO-3 needs the 16 bytes/parameter of fp32 master
weights and Adam moments spread over many GPUs; LoRA trains low-rank adapters (a fraction of a
percent of the parameters) over frozen base weights, and QLoRA keeps those base weights in 4-bit
NF4 so a 7B model fits on one 24 GB GPU. The README's "LoRA / QLoRA" section has the choice table.

New visual-token rows. The `<boi>`, `<eoi>`, `<img_k>` rows of the input embedding and the
output head have no pretrained value, so they must be trained in full while every old row stays
frozen. peft's `trainable_token_indices` does exactly that (installed peft 0.21; it wraps the
layer in a `TrainableTokensWrapper` whose only parameter is an n_new x hidden matrix of the
selected rows, `trainable_tokens_delta`, written into the frozen matrix with `index_copy` in the
forward pass). We name both the input embedding and the output head explicitly: an untied
`lm_head` then gets its own rows, and for a tied head peft ties the head's wrapper to the
embedding's, so one set of rows serves both (as the tied weight did). The alternative,
`modules_to_save`, would copy and train the whole matrices and move the old rows too.

L2 anti-forgetting under LoRA. The trainer's pull is `λ_reg·‖θ − θ₀‖²` over the trainable
parameters, with θ₀ the pretrained LLM. Frozen base weights equal θ₀ forever and need no pull.
The adapted model equals the pretrained one exactly when every adapter product B·A is zero, so for
the adapters θ₀ = 0 and the pull becomes decay towards zero, θ ← θ − lr·2λ_reg·θ, on each LoRA
A and B matrix (cheap: adapters are tiny and local to each rank). The new token rows have no
pretrained value and are not pulled, as with the default for full fine-tuning.
`lora_anchor_parameters` lists exactly the parameters the pull covers.

QLoRA. The base must be *loaded* in 4 bit: the trainer passes `quantization_config_4bit(dtype)`
to `from_pretrained` (bitsandbytes NF4, double quantisation, compute in the run's dtype), then
`apply_lora` prepares it with peft's `prepare_model_for_kbit_training`. bitsandbytes 0.50+ has
CPU kernels for 4-bit (so QLoRA trains and is tested on CPU; older releases are CUDA-only), and
its 4-bit weights cannot be partitioned by ZeRO-3, hence `check_lora_supported`. Exports rebuild
the base at full precision and apply the trained adapters to it (`radllm.training.export`). This
module imports without bitsandbytes installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from radllm.errors import RadllmError

# The attention and MLP projections of Llama, Mistral and Qwen2 (same module names in all three).
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EXPORT_MODES = ("merge", "adapter")
ADAPTER_MATRICES = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
CPU_4BIT_BITSANDBYTES = (0, 50)  # the first bitsandbytes release with CPU 4-bit kernels


@dataclass
class LoraSettings:
    """The `lora:` block of a run config (plain fields so OmegaConf can validate it).

    Attributes:
        enabled: train LoRA adapters instead of all weights.
        r: adapter rank.
        alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapter input.
        target_modules: names (last path component) of the Linear layers that get adapters.
        quantize_4bit: QLoRA: base weights in 4-bit NF4 (bitsandbytes; 0.50+ on CPU; ZeRO stage <= 2).
        train_new_token_rows: train the new visual-token rows of the input embedding and output
            head (the old rows stay frozen).
    """

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    quantize_4bit: bool = False
    train_new_token_rows: bool = True


def check_lora_supported(settings: LoraSettings, zero_stage: int, cuda_available: bool) -> None:
    """Reject LoRA settings this run cannot honour, before any process group or model exists.

    Args:
        settings: the run config's `lora` block.
        zero_stage: the DeepSpeed ZeRO stage of the run (0 = no ZeRO).
        cuda_available: whether the run trains on CUDA devices.

    Raises:
        RadllmError: naming the `lora.*` key (or the ZeRO stage) and what to change.
    """
    if settings.quantize_4bit and not settings.enabled:
        raise RadllmError("lora.quantize_4bit=true needs lora.enabled=true (QLoRA trains LoRA adapters over 4-bit base weights)")
    if not settings.enabled:
        return
    if settings.r < 1:
        raise RadllmError(f"lora.r={settings.r}: the adapter rank must be a positive integer")
    if settings.alpha <= 0:
        raise RadllmError(f"lora.alpha={settings.alpha}: expected a positive number")
    if not 0.0 <= settings.dropout < 1.0:
        raise RadllmError(f"lora.dropout={settings.dropout}: expected a value in [0, 1)")
    if not settings.target_modules:
        raise RadllmError("lora.target_modules is empty: name at least one Linear layer, e.g. q_proj")
    if zero_stage not in (0, 1, 2, 3):
        raise RadllmError(f"ZeRO stage {zero_stage}: expected 0 (no ZeRO), 1, 2 or 3")
    if settings.quantize_4bit:
        if zero_stage > 2:
            raise RadllmError(
                f"lora.quantize_4bit=true (QLoRA) cannot run under ZeRO stage {zero_stage}: 4-bit weights cannot be "
                "partitioned; use ds_configs/zero2.json (or no ZeRO), or set lora.quantize_4bit=false for LoRA under ZeRO-3"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise RadllmError(
                "lora.quantize_4bit=true (QLoRA) needs bitsandbytes: pip install 'radllm[qlora]' "
                "(or set lora.quantize_4bit=false)"
            )
        version = importlib.metadata.version("bitsandbytes")
        if not cuda_available and tuple(int(part) for part in re.findall(r"\d+", version)[:2]) < CPU_4BIT_BITSANDBYTES:
            raise RadllmError(
                f"lora.quantize_4bit=true (QLoRA) on CPU needs bitsandbytes >= 0.50 (CPU 4-bit kernels); {version} is "
                "installed: pip install 'radllm[qlora]', or set lora.quantize_4bit=false"
            )
    if zero_stage == 3 and settings.train_new_token_rows and not cuda_available:
        raise RadllmError(
            "lora.train_new_token_rows=true under ZeRO-3 needs CUDA: peft gathers the partitioned token rows "
            "on a CUDA device; on CPU use ds_configs/zero2.json or set lora.train_new_token_rows=false"
        )


def quantization_config_4bit(compute_dtype: torch.dtype = torch.bfloat16):
    """The QLoRA `quantization_config` for `from_pretrained`: NF4, double quantisation, 16-bit compute.

    Returns a `transformers.BitsAndBytesConfig`; building it does not need bitsandbytes, loading
    a model with it does (0.50+ on CPU).
    """
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def _module_name(model: nn.Module, module: nn.Module | None, what: str) -> str:
    """Qualified name of `module` inside `model` (peft selects layers by name)."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise RadllmError(f"the model has no {what} module; LoRA with trainable token rows needs one")


def _token_indices(model: nn.Module, token_ids: Sequence[int]) -> dict[str, list[int]]:
    """peft's `trainable_token_indices`: the same rows of the input embedding and the output head."""
    ids = sorted({int(i) for i in token_ids})
    weight = model.get_input_embeddings().weight
    rows = getattr(weight, "ds_shape", weight.shape)[0]  # ZeRO-3 leaves an empty local tensor
    bad = [i for i in ids if not 0 <= i < rows]
    if bad:
        raise RadllmError(f"trainable token ids {bad[:5]} are outside the embedding's {rows} rows")
    embed = _module_name(model, model.get_input_embeddings(), "input embedding")
    head = _module_name(model, model.get_output_embeddings(), "output head")
    return {embed: ids, head: ids}


def _check_target_modules(model: nn.Module, targets: Sequence[str]) -> None:
    """Each target must name at least one Linear layer (peft's own error does not say which exist)."""
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in linear]
    if missing:
        raise RadllmError(
            f"lora.target_modules {missing} match no Linear layer of this model; available: {sorted(linear)}"
        )


def apply_lora(model: nn.Module, settings: LoraSettings, trainable_token_ids: Sequence[int]) -> nn.Module:
    """Wrap `model` (vocabulary already extended) in peft LoRA; returns the `PeftModel`.

    Afterwards only the adapters and, when `settings.train_new_token_rows`, the rows
    `trainable_token_ids` of the input embedding and output head require gradients. Call it
    before `deepspeed.initialize`, and give the optimizer only parameters with `requires_grad`.

    Args:
        model: a transformers causal LM; for QLoRA loaded with `quantization_config_4bit`.
        settings: the `lora` block (`check_lora_supported` has accepted it).
        trainable_token_ids: ids of the new visual tokens (`<boi>`, `<eoi>`, `<img_k>`).

    Raises:
        RadllmError: target modules missing from the model, token ids out of range, or
            `quantize_4bit` with a model not loaded in 4 bit.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    _check_target_modules(model, settings.target_modules)
    token_indices = _token_indices(model, trainable_token_ids) if settings.train_new_token_rows and trainable_token_ids else None
    if settings.quantize_4bit:
        if not getattr(model, "is_loaded_in_4bit", False):
            raise RadllmError(
                "lora.quantize_4bit=true but the model was not loaded in 4 bit: load it with "
                "from_pretrained(..., quantization_config=quantization_config_4bit(dtype))"
            )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=getattr(model, "is_activation_checkpointing", False))
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
        trainable_token_indices=token_indices,
    )
    return get_peft_model(model, config)


def lora_anchor_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters the L2 anti-forgetting pull covers under LoRA: every trainable LoRA A/B matrix.

    Their anchor is θ₀ = 0 (see the module docstring), so the pull is decay towards zero. Frozen
    base weights and the new token rows (`trainable_tokens_delta`) are not listed.
    """
    return [
        (name, param)
        for name, param in model.named_parameters()
        if param.requires_grad and any(part in ADAPTER_MATRICES for part in name.split("."))
    ]


def export_lora(model: nn.Module, out_dir: str | os.PathLike, mode: str) -> None:
    """Write a LoRA-trained model as a Hugging Face directory.

    Files go into `out_dir` (created if needed). To publish the directory atomically together
    with the tokenizer and `radllm.json`, call this inside `radllm.atomic.atomic_directory` and
    add those files to the same temporary directory.

    Args:
        model: the `PeftModel` from `apply_lora` with full (not ZeRO-partitioned) 16/32-bit weights.
        out_dir: destination directory.
        mode: "merge": adapters and token rows folded into the base weights, saved as a plain
            model (safetensors + config.json) that `AutoModelForCausalLM.from_pretrained` loads;
            this consumes the adapters of `model`. "adapter": a peft adapter directory
            (adapter_config.json + adapter_model.safetensors) for
            `PeftModel.from_pretrained(base, out_dir)`, `base` being the pretrained LLM resized to
            the tokenizer's padded vocabulary. It holds the adapters and the new token rows and,
            when the base's config on disk has fewer rows (the trainer's case), also the full
            embedding and head: peft's default, kept so that the padding rows' logits do not
            depend on how the reloading code initialises the extra rows.

    Raises:
        RadllmError: an unknown mode, or merging into a 4-bit base.
    """
    from peft import PeftModel

    if mode not in EXPORT_MODES:
        raise RadllmError(f"LoRA export mode {mode!r}: expected one of {list(EXPORT_MODES)}")
    if not isinstance(model, PeftModel):
        raise TypeError(f"export_lora needs the PeftModel returned by apply_lora, got {type(model).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mode == "adapter":
        model.save_pretrained(out)
        return
    if getattr(model.get_base_model(), "is_loaded_in_4bit", False):
        raise RadllmError(
            "cannot merge LoRA adapters into 4-bit base weights (the result would stay quantised): rebuild the "
            "model with lora.quantize_4bit=false, load the trained adapters into it, then export with merge"
        )
    model.merge_and_unload().save_pretrained(out)
