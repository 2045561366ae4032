"""How packed rows reach a Hugging Face causal LM without attention crossing sample boundaries.

What transformers 5.x does with the inputs (read from `masking_utils.py`,
`modeling_flash_attention_utils.py` and `integrations/sdpa_attention.py`):

- A 4D `attention_mask` is returned untouched by `create_causal_mask` (`_preprocess_mask_arguments`
  exits early), so the model attends exactly as the mask says. SDPA takes it as `attn_mask`
  (bool: True = attend); eager attention *adds* it to the scores, so eager needs a float mask
  holding 0 and the dtype's minimum.
- Without a mask, packing is inferred from `position_ids` (a new sample wherever consecutive ids
  do not increase by 1), but only when `past_key_values` is None. A model whose config has
  `use_cache=True` creates a cache in `forward` unless told otherwise, and then the packed
  samples silently attend to each other. Hence `use_cache=False` here and the explicit mask for
  SDPA/eager, which does not depend on that inference.
- A 4-D flex `BlockMask` is passed through the same way; the flex integration uses it as the
  block mask of `flex_attention` (`document_block_mask`).
- flash_attention_2/3 run the varlen kernel over the batch flattened to B*L tokens when
  `cu_seq_lens_q/k` and `max_length_q/k` are passed (and no 2D padding mask): exactly the
  `cu_seqlens` / `max_seqlen` that `collate_packed` produces, padding runs included as their own
  sequences. `position_ids` still feed the rotary embeddings.
- `radllm_varlen_sdpa` (registered here with transformers' attention and mask interfaces) takes
  the same varlen arguments and runs causal SDPA on each sample alone: the cost of attention is
  the sum of the samples' squared lengths instead of the row's, and no mask exists. It is the
  kernel for CPUs (where flash-attn does not exist and FlexAttention has no backward); without
  varlen arguments (generation) it is plain SDPA with transformers' own mask.

Labels are not passed to the model: the trainer sums per-token NLLs itself (through
`radllm.modeling.chunked_loss`, or from whole logits) so that the loss is normalised by the
global number of target tokens, not by each micro-batch's.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from radllm.errors import RadllmError
from radllm.packing.collate import block_causal_mask

VARLEN_SDPA = "radllm_varlen_sdpa"
#: Kernels that take packed boundaries as flash-attn's varlen arguments (`cu_seq_lens_q/k`, ...).
VARLEN_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", VARLEN_SDPA)
FLEX_IMPLEMENTATIONS = ("flex_attention",)
MASK_IMPLEMENTATIONS = ("sdpa", "eager")
SUPPORTED_IMPLEMENTATIONS = VARLEN_IMPLEMENTATIONS + FLEX_IMPLEMENTATIONS + MASK_IMPLEMENTATIONS


def select_attention_implementation() -> str:
    """The fastest kernel that keeps packed samples apart here.

    flash-attn 2's varlen kernel on CUDA when installed; else PyTorch's flex attention on CUDA,
    with a document mask built from the packed boundaries (`document_block_mask`: no dense
    [B, 1, L, L] mask, and fully masked blocks are skipped); on CPU, causal SDPA per sample
    (`varlen_sdpa_attention`: FlexAttention has no backward there). Dense-mask SDPA and eager
    remain selectable by name, for comparison and tiny tests.
    """
    if not torch.cuda.is_available():
        return VARLEN_SDPA
    return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "flex_attention"


def varlen_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of packed rows as causal SDPA over each run of `cu_seq_lens_q`, alone.

    query [B, H, L, D], key/value [B, H_kv, L, D] (grouped-query heads are shared by SDPA
    itself); returns [B, L, H, D] as transformers' attention functions do. Without varlen
    arguments this is transformers' SDPA attention with the mask it was given.
    """
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    batch, heads, length, dim = query.shape

    def flat(states: torch.Tensor) -> torch.Tensor:  # [B, h, L, D] -> [1, h, B*L, D]: runs are contiguous
        return states.transpose(0, 1).reshape(1, states.shape[1], batch * length, dim)

    q, k, v = flat(query), flat(key), flat(value)
    bounds = cu_seqlens.tolist()
    outputs = [
        F.scaled_dot_product_attention(
            q[:, :, start:end], k[:, :, start:end], v[:, :, start:end], dropout_p=dropout, is_causal=True, scale=scaling,
            enable_gqa=k.shape[1] != heads,
        )
        for start, end in zip(bounds[:-1], bounds[1:])
    ]
    return torch.cat(outputs, dim=2).view(heads, batch, length, dim).permute(1, 2, 0, 3), None


def varlen_sdpa_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask for packed rows (the runs keep samples apart); SDPA's own mask when a padding mask is given."""
    return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
AttentionMaskInterface.register(VARLEN_SDPA, varlen_sdpa_mask)


def document_block_mask(cu_seqlens: torch.Tensor, batch: int, length: int, device: torch.device | str, block_size: int = 128):
    """Flex attention's `BlockMask` for packed rows: causal attention inside each run of `cu_seqlens`.

    Every sample (and every padding run) of the flattened [batch, length] tokens is a document; a
    query attends to the keys of its own document at or before its position. The block table is
    worked out from each block's first and last document id (documents only grow along a row), so
    nothing of size length² is ever made: `create_block_mask` would evaluate the mask function at
    every (query, key) pair, holding [batch, length, length] int64 ids for a moment (268 MB for
    two rows of 4,096), more than the dense boolean mask this replaces.
    """
    from torch.nn.attention.flex_attention import BlockMask

    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long().to(device)
    document = torch.repeat_interleave(torch.arange(len(lengths), device=device), lengths).view(batch, length)
    blocks = -(-length // block_size)
    padded = torch.nn.functional.pad(document, (0, blocks * block_size - length), mode="replicate").view(batch, blocks, block_size)
    first, last = padded[:, :, 0], padded[:, :, -1]  # [B, blocks]: smallest and largest document of each block
    q_block = torch.arange(blocks, device=device)[:, None]
    kv_block = torch.arange(blocks, device=device)[None, :]
    # A key block at or before the query block shares a document with it iff its last document
    # reaches the query block's first; it is fully visible iff it lies strictly before and both
    # blocks hold one and the same document (a ragged tail block is always left to the mask).
    visible = (kv_block <= q_block) & (last[:, None, :] >= first[:, :, None])  # [B, q blocks, kv blocks]
    single = (first == last) & (torch.arange(blocks, device=device) * block_size + block_size <= length)
    full = (kv_block < q_block) & single[:, :, None] & single[:, None, :] & (first[:, None, :] == first[:, :, None])
    partial = visible & ~full

    def ordered(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query block: how many key blocks, and their indices first (BlockMask's layout, one head)."""
        indices = torch.argsort(table.to(torch.int8), dim=-1, descending=True, stable=True)
        return table.sum(-1, dtype=torch.int32)[:, None], indices.to(torch.int32)[:, None]

    def causal_within_document(b, h, q, kv):
        return (document[b, q] == document[b, kv]) & (kv <= q)

    return BlockMask.from_kv_blocks(*ordered(partial), *ordered(full), BLOCK_SIZE=block_size, mask_mod=causal_within_document,
                                    seq_lengths=(length, length))


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float version of a boolean mask: 0 where attending, the dtype's minimum elsewhere."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def model_inputs_for_packed_batch(
    batch: dict[str, torch.Tensor],
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """Keyword arguments for `model(**kwargs)` on a `collate_packed` batch.

    Args:
        batch: output of `collate_packed` (already on the model's device). SDPA/eager get the
            dense block mask built here from `position_ids` (the last-resort kernels).
        attn_implementation: the model's `config._attn_implementation`.
        dtype: the model's compute dtype (eager's additive mask is built in it).

    Raises:
        RadllmError: an attention implementation that cannot honour packed boundaries here.
    """
    input_ids, position_ids = batch["input_ids"], batch["position_ids"]
    kwargs: dict[str, Any] = {"input_ids": input_ids, "position_ids": position_ids, "use_cache": False}
    if attn_implementation in VARLEN_IMPLEMENTATIONS:
        cu_seqlens = batch["cu_seqlens"].to(device=input_ids.device, dtype=torch.int32)
        if int(cu_seqlens[-1]) != input_ids.numel():
            raise ValueError(f"cu_seqlens ends at {int(cu_seqlens[-1])} but the batch holds {input_ids.numel()} tokens")
        max_seqlen = int(batch["max_seqlen"])
        kwargs.update(cu_seq_lens_q=cu_seqlens, cu_seq_lens_k=cu_seqlens, max_length_q=max_seqlen, max_length_k=max_seqlen)
    elif attn_implementation in FLEX_IMPLEMENTATIONS:
        kwargs["attention_mask"] = document_block_mask(batch["cu_seqlens"], *input_ids.shape, input_ids.device)
    elif attn_implementation in MASK_IMPLEMENTATIONS:
        mask = block_causal_mask(position_ids)  # [B, 1, L, L], built on the model's device
        kwargs["attention_mask"] = additive_mask(mask, dtype) if attn_implementation == "eager" else mask
    else:
        raise RadllmError(
            f"attention implementation {attn_implementation!r} is not supported for packed training; "
            f"use one of {list(SUPPORTED_IMPLEMENTATIONS)}"
        )
    return kwargs
