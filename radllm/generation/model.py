"""Load an exported model directory for generation and check it against its VQ-GAN.

An exported model (`radllm export`) is a plain Hugging Face directory plus `radllm.json`. Before
any decoding, three artifacts must agree: the tokenizer files with `radllm.json` (every image id),
the model's embedding rows with the spec's padded vocabulary, and, when images are encoded or
decoded, the VQ-GAN with the spec (codebook, grid, weights hash). Any mismatch is an error naming
both sides, never silently shifted tokens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from radllm.devices import resolve_device
from radllm.errors import RadllmError
from radllm.vocab.load import load_tokenizer, verify_vq
from radllm.vocab_spec import SPEC_FILENAME, VisualVocabSpec
from radllm.vq.checkpoint import load_vq
from radllm.vq.tokenizer import ImageTokenizer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Generator:
    """Everything decoding needs: the LM, its tokenizer and spec, and (optionally) the VQ-GAN.

    `stop_together` is set when the model's forwards are collective, as in a ZeRO-3 training
    engine's module: greedy/sampled report decoding then stops by that rank-agreed rule (see
    `radllm.generation.decode.decode_text`).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: VisualVocabSpec
    vq: ImageTokenizer | None
    stop_together: Callable[[bool], bool] | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def vocab_size(self) -> int:
        weight = self.model.get_output_embeddings().weight
        return int(getattr(weight, "ds_shape", weight.shape)[0])  # ds_shape: full shape of a ZeRO-3 partition

    @property
    def pad_id(self) -> int:
        """Id used for left padding (never attended to): the tokenizer's pad, else its eos."""
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def require_vq(self) -> ImageTokenizer:
        if self.vq is None:
            raise RadllmError("this step needs the VQ-GAN: pass --vq VQ_DIR")
        return self.vq


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` = bfloat16 on CUDA, float32 elsewhere (CPU half precision is slow and lossy)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise RadllmError(f"--dtype {dtype!r}; expected auto or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def load_generator(
    model_dir: str | os.PathLike,
    vq_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str = "auto",
) -> Generator:
    """Load model, tokenizer, spec and VQ-GAN, after checking they belong together.

    Raises:
        RadllmError: missing directory or `radllm.json`, tokenizer/spec mismatch, model vocabulary
            not the spec's padded size, or a VQ-GAN other than the one the spec was built for.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise RadllmError(f"model directory {model_dir} does not exist")
    if not (model_dir / SPEC_FILENAME).is_file():
        raise RadllmError(f"{model_dir}: no {SPEC_FILENAME}; is this a model exported by `radllm export`?")
    tokenizer, spec = load_tokenizer(model_dir)
    vq = None
    if vq_dir is not None:
        verify_vq(spec, vq_dir, str(model_dir / SPEC_FILENAME))
    torch_device = resolve_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=resolve_dtype(dtype, torch_device), trust_remote_code=False, local_files_only=True
        )
    except (OSError, ValueError) as err:
        raise RadllmError(f"{model_dir}: cannot load a causal LM from it: {err}") from err
    rows = int(model.get_output_embeddings().weight.shape[0])
    if rows != spec.vocab_size:
        raise RadllmError(
            f"{model_dir}: the model has {rows} output rows but {SPEC_FILENAME} says vocab_size = {spec.vocab_size}; "
            "export the model after resizing its embeddings to the visual vocabulary"
        )
    model.to(torch_device).eval()
    if vq_dir is not None:
        vq = load_vq(vq_dir, device=torch_device)
    log.info("loaded %s (%d parameters) on %s", model_dir, sum(p.numel() for p in model.parameters()), torch_device)
    return Generator(model=model, tokenizer=tokenizer, spec=spec, vq=vq)
