"""Packing task examples into fixed-length rows, batch collation and the token-normalised loss."""

from radllm.packing.collate import block_causal_mask, collate_packed, collate_padded
from radllm.packing.loss import causal_lm_loss, count_targets, target_mask, token_nll
from radllm.packing.rows import OVERFLOW_POLICIES, PackedRow, PackingStats, pack_carrying, pack_examples, pack_stream, packing_efficiency

__all__ = [
    "OVERFLOW_POLICIES",
    "PackedRow",
    "PackingStats",
    "block_causal_mask",
    "causal_lm_loss",
    "collate_packed",
    "count_targets",
    "collate_padded",
    "pack_carrying",
    "pack_examples",
    "pack_stream",
    "packing_efficiency",
    "target_mask",
    "token_nll",
]
