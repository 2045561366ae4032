"""The distributed trainer behind `deepspeed radllm/train.py` (config, model, anchor, loop, checkpoints, LoRA)."""
