"""`radllm export`: a training checkpoint to a Hugging Face model directory (library: radllm.training.export)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write a training checkpoint as a Hugging Face model dir (safetensors, config, tokenizer, radllm.json)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a complete checkpoint directory, e.g. runs/stage1/checkpoints/step_0001000")
    parser.add_argument("--out", required=True, help="output model directory (replaced atomically)")
    parser.add_argument("--lora", choices=("merge", "adapter"), default="merge",
                        help="LoRA runs: merge the adapters into the weights (default) or save a peft adapter")


def run(args: argparse.Namespace) -> int:
    from radllm.training.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out, args.lora)
    print(f"exported {args.checkpoint} -> {out}")
    return 0
