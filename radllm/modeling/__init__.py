"""Model-side glue: how radllm's packed batches are fed to Hugging Face causal LMs."""

from radllm.modeling.packed_attention import (
    SUPPORTED_IMPLEMENTATIONS,
    additive_mask,
    model_inputs_for_packed_batch,
    select_attention_implementation,
)

__all__ = ["SUPPORTED_IMPLEMENTATIONS", "additive_mask", "model_inputs_for_packed_batch", "select_attention_implementation"]
