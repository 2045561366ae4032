"""Held-out report perplexity of a causal LM: how well it still models report text.

    radllm perplexity --model runs/demo/stage2/model --shards runs/demo/shards --split test --out ppl.json

The sequences are exactly those of the text-only LM task (`radllm.tasks.text_lm`: start token,
the shard's report ids, eos; every token after the start is a target), so the number is the
held-out value of the loss the text-only stage trains. Perplexity = exp(token-weighted mean
NLL): the summed NLL of all target tokens of the split divided by their count, not a mean of
per-report values (short reports would weigh as much as long ones). Models are comparable only
when they share the tokenizer (the pretrained LM and its stage 1/2 descendants do).

Reports are packed into rows (`radllm.packing`, attention never crosses reports) and scored a
few rows per forward pass; the logits of one pass are [rows, tokens_per_row, vocab] floats, which
bounds memory (a 128k vocabulary at 2048 tokens per row is 1 GB per row in float32).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm
from transformers import PreTrainedModel

from radllm.data.split import read_split
from radllm.errors import RadllmError
from radllm.generation.model import load_generator
from radllm.modeling.packed_nll import packed_token_nll
from radllm.packing import collate_packed, count_targets, pack_examples
from radllm.tasks import TaskExample, text_lm_examples


@dataclass
class Perplexity:
    """Held-out report perplexity of one model on one split."""

    model: str
    shards: str
    split: str
    n_studies: int  # reports scored (empty reports have no targets and are left out)
    n_tokens: int  # target tokens: report tokens + eos, summed over the split
    nll: float  # mean negative log-likelihood per target token, nats
    perplexity: float  # exp(nll)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def summed_nll(
    model: PreTrainedModel,
    examples: Sequence[TaskExample],
    pad_id: int,
    tokens_per_row: int = 2048,
    rows_per_batch: int = 4,
    progress: bool = False,
) -> tuple[float, int]:
    """Summed NLL (nats, accumulated in float64) of all target tokens of `examples`, and their count.

    Rows are `tokens_per_row` long, or as long as the longest example, so none is dropped.
    """
    if tokens_per_row < 1 or rows_per_batch < 1:
        raise RadllmError(f"tokens_per_row={tokens_per_row} and rows_per_batch={rows_per_batch} must be positive")
    if not examples:
        return 0.0, 0
    rows = pack_examples(examples, max(tokens_per_row, max(len(e) for e in examples)), pad_id)
    implementation = model.config._attn_implementation
    total, count = 0.0, 0
    batches = range(0, len(rows), rows_per_batch)
    for start in tqdm(batches, desc="perplexity", unit="batch", disable=not progress):
        batch = collate_packed(rows[start : start + rows_per_batch])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        total += float(packed_token_nll(model, batch, implementation, model.dtype).sum())
        count += int(count_targets(batch["labels"]))
    return total, count


def report_perplexity(
    model_dir: str | os.PathLike,
    shards: str | os.PathLike,
    split: str = "test",
    device: str = "auto",
    dtype: str = "auto",
    tokens_per_row: int = 2048,
    rows_per_batch: int = 4,
    progress: bool = True,
) -> Perplexity:
    """Perplexity of the exported model in `model_dir` on the reports of `split`.

    Raises:
        RadllmError: a model that is not a radllm export, shards made for another visual
            vocabulary/tokenizer, damaged shards, or a split without report tokens.
    """
    loaded = load_generator(model_dir, device=device, dtype=dtype)
    studies = read_split(shards, split, loaded.spec)
    examples = text_lm_examples(studies, loaded.tokenizer, loaded.spec)
    total, count = summed_nll(loaded.model, examples, loaded.pad_id, tokens_per_row, rows_per_batch, progress)
    if count == 0:
        raise RadllmError(f"{shards}: split {split!r} has no report tokens to score")
    nll = total / count
    return Perplexity(str(model_dir), str(shards), split, len(examples), count, nll, math.exp(nll))
