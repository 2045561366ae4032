"""L2 anti-forgetting: pull the trained weights θ towards the ORIGINAL pretrained LLM θ₀.

The penalty is `λ·‖θ − θ₀‖²`. It is applied *decoupled*, like AdamW's weight decay, on the fp32
master weights right before each optimizer step:

    θ ← θ − lr·2λ·(θ − θ₀)        then the optimizer's own update (Adam on the loss gradient)

i.e. exactly an SGD step on the penalty with the current learning rate, kept out of Adam's
moment estimates. As a gradient term it would be divided by Adam's √v: parameters with small
loss gradients would be yanked back at full speed and those with large ones barely held, the
same reason AdamW decouples its decay. (torch's AdamW also decays before its Adam update, so
with θ₀ = 0 this is AdamW's decay with weight_decay = 2λ.) The run config's `validate()` requires
2·lr·λ < 1 so the pull never overshoots θ₀.

No communication: under ZeRO-3 every rank holds a 1/world slice of each parameter's fp32 master
copy (`safe_get_local_fp32_param`); under ZeRO-1/2 a fragment of the flat fp32 partition
(`param._hp_mapping`). θ₀ is held as the same slice, built at start-up from the pretrained
files, one tensor at a time (no rank ever holds the whole model), so a resume, a new world size
or the stage-1 → stage-2 switch all rebuild the right slices and nothing of θ₀ is checkpointed.

What is pulled: every trainable parameter of a full fine-tune, except the rows the visual
vocabulary added to the embedding and an untied head (they have no pretrained value; with
`anchor.include_new_rows` they are pulled towards their reproducible initial values, see
`radllm.training.model.new_row_values`). Rows are contiguous in the flattened matrix, so the
exclusion is a suffix of each fragment and needs no mask. Under LoRA the pull covers only the
adapters with θ₀ = 0 (`radllm.training.lora.lora_anchor_parameters`).

The logged `‖θ − θ₀‖²` (`squared_distance`, measured before the pull) sums the local slices and is
all-reduced by the caller together with the loss statistics, so it costs no extra collective.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from radllm.errors import RadllmError
from radllm.training.model import full_shape, new_row_values

#: full fp32 value of θ₀ for a parameter name (None: not covered)
Reference = Callable[[str, nn.Parameter], "torch.Tensor | None"]


@dataclass
class LocalSlice:
    """The part of one parameter this rank pulls: flattened elements [start, start + length)."""

    name: str
    param: nn.Parameter
    start: int
    length: int
    target: torch.Tensor  # θ₀ of those elements, fp32, on the master weights' device


def local_fragment(param: nn.Parameter, zero_stage: int) -> tuple[int, int]:
    """(start, numel) of the rank's fp32 master fragment inside the flattened parameter."""
    if zero_stage == 3:
        import deepspeed.comm as dist

        partition = param.ds_tensor.ds_numel
        start = dist.get_rank(group=param.ds_process_group) * partition
        return start, max(0, min(partition, param.ds_numel - start))
    mapping = getattr(param, "_hp_mapping", None)
    if mapping is None:
        return 0, 0
    return mapping.lp_fragment_address.start, mapping.lp_fragment_address.numel


def get_master(param: nn.Parameter, zero_stage: int) -> torch.Tensor:
    """The rank's fp32 master fragment (ZeRO-3: the whole partition, padding included)."""
    if zero_stage == 3:
        from deepspeed.utils import safe_get_local_fp32_param

        return safe_get_local_fp32_param(param)
    return param._hp_mapping.get_hp_fragment()


def set_master(param: nn.Parameter, value: torch.Tensor, zero_stage: int) -> None:
    if zero_stage == 3:
        from deepspeed.utils import safe_set_local_fp32_param

        safe_set_local_fp32_param(param, value)
    else:
        fragment = param._hp_mapping.get_hp_fragment()
        if value.data_ptr() != fragment.data_ptr():
            fragment.copy_(value)


class PretrainedWeights:
    """θ₀ read from a local HF model directory, one tensor at a time, resized like the trained model.

    Embedding/head rows beyond the pretrained vocabulary get `new_row_values` (the values the
    trained model's new rows started from); callers exclude them unless `include_new_rows`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        vocab_names: set[str],
        *,
        noise: float,
        seed: int,
        include_new_rows: bool,
        text_vocab_size: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.vocab_names, self.noise, self.seed, self.include_new_rows = vocab_names, noise, seed, include_new_rows
        self.files = self._weight_files()
        self.keys: dict[str, Path] = {}
        for path in self.files:
            with safe_open(str(path), framework="pt") as handle:
                self.keys.update({key: path for key in handle.keys()})
        config = json.loads((self.directory / "config.json").read_text(encoding="utf-8"))
        self.tied = bool(config.get("tie_word_embeddings", False))
        self.pretrained_vocab = int(config["vocab_size"])
        # Rows radllm added (pad, <boi>, <eoi>, <img_k>, padding to 64) start at the base
        # tokenizer's size. A "pretrained" LM trained here with the extended tokenizer (the demo's
        # text-only stage) already has those rows, but text never trained them, so they are
        # excluded like rows the pretrained file lacks.
        self.first_added_row = min(self.pretrained_vocab, text_vocab_size or self.pretrained_vocab)

    def _weight_files(self) -> list[Path]:
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            return [self.directory / name for name in names]
        single = self.directory / "model.safetensors"
        if single.is_file():
            return [single]
        raise RadllmError(f"anchor.pretrained = {str(self.directory)!r}: no model.safetensors (or sharded index) there")

    def _read(self, key: str) -> torch.Tensor:
        with safe_open(str(self.keys[key]), framework="pt") as handle:
            return handle.get_tensor(key).float()

    def __call__(self, name: str, param: nn.Parameter) -> torch.Tensor:
        key = name
        if key not in self.keys and name.endswith("lm_head.weight") and self.tied:
            key = next((k for k in self.keys if k.endswith("embed_tokens.weight")), key)
        if key not in self.keys:
            raise RadllmError(f"{self.directory}: the pretrained weights have no tensor {name!r}; anchor.pretrained must be the same architecture as the model")
        value = self._read(key)
        shape = tuple(full_shape(param))
        if name in self.vocab_names and value.shape[0] == self.pretrained_vocab and shape[0] > self.pretrained_vocab and value.shape[1:] == shape[1:]:
            extra = new_row_values(value, self.pretrained_vocab, shape[0], self.noise, self.seed)
            value = torch.cat([value, extra])
        if tuple(value.shape) != shape:
            raise RadllmError(f"{self.directory}: tensor {name!r} has shape {tuple(value.shape)}, the model's has {shape}")
        return value

    def pulled_elements(self, name: str, value: torch.Tensor) -> int:
        """How many leading elements of the flattened tensor are pulled (new vocabulary rows are a suffix)."""
        if self.include_new_rows or name not in self.vocab_names:
            return value.numel()
        return min(value.numel(), self.first_added_row * value.shape[1])


def zeros_reference(name: str, param: nn.Parameter) -> torch.Tensor:
    """θ₀ = 0 (LoRA adapters: the adapted model equals the pretrained one when B·A = 0)."""
    return torch.zeros(tuple(full_shape(param)))


class L2Anchor:
    """θ₀ slices of this rank and the pull; build after `deepspeed.initialize`.

    Args:
        params: (name, parameter) pairs to cover (trainable parameters of the engine's module,
            or `lora_anchor_parameters`).
        reference: full fp32 θ₀ per parameter (`PretrainedWeights` or `zeros_reference`).
        zero_stage: 1, 2 or 3.
        lambda_reg: λ.
        pulled_elements: leading flattened elements of (name, θ₀) to pull (default: all).
    """

    def __init__(
        self,
        params: list[tuple[str, nn.Parameter]],
        reference: Reference,
        zero_stage: int,
        lambda_reg: float,
        pulled_elements: Callable[[str, torch.Tensor], int] | None = None,
    ) -> None:
        if zero_stage not in (1, 2, 3):
            raise RadllmError(f"the L2 anchor needs ZeRO stage 1, 2 or 3 (fp32 master weights); the DeepSpeed config has stage {zero_stage}")
        self.zero_stage = zero_stage
        self.lambda_reg = lambda_reg
        self.slices: list[LocalSlice] = []
        for name, param in params:
            start, numel = local_fragment(param, zero_stage)
            value = reference(name, param)
            limit = pulled_elements(name, value) if pulled_elements else value.numel()
            length = max(0, min(numel, limit - start))
            if length == 0:
                continue
            device = get_master(param, zero_stage).device
            target = value.reshape(-1)[start : start + length].clone().to(device)
            self.slices.append(LocalSlice(name, param, start, length, target))
            del value

    @property
    def numel(self) -> int:
        """Elements of θ₀ held by this rank."""
        return sum(s.length for s in self.slices)

    @torch.no_grad()
    def squared_distance(self) -> torch.Tensor:
        """Local `Σ (θ − θ₀)²` over this rank's slices (fp64 scalar on CPU); all-reduce to get the global value."""
        parts = [(get_master(p.param, self.zero_stage)[: p.length] - p.target).double().square().sum() for p in self.slices]
        return _sum_on_cpu(parts)

    @torch.no_grad()
    def pull(self, lr: float) -> None:
        """Apply θ ← θ − lr·2λ(θ − θ₀) on the local slices (the distance is `squared_distance`'s, taken before)."""
        coefficient = 2.0 * lr * self.lambda_reg
        if not coefficient:
            return
        for piece in self.slices:
            master = get_master(piece.param, self.zero_stage)
            master[: piece.length] -= coefficient * (master[: piece.length] - piece.target)
            set_master(piece.param, master, self.zero_stage)


def _sum_on_cpu(parts: list[torch.Tensor]) -> torch.Tensor:
    """Sum scalars that may live on an accelerator with a single device-to-host copy."""
    if not parts:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack(parts).sum().cpu()
