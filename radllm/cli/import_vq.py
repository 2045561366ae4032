"""`radllm import-vq --llamagen vq_ds16_c2i.pt --out runs/llamagen-vq16 [--image-size 256] [--preset vq-16]`

Turns a released image tokenizer into a radllm tokenizer directory (`model.safetensors` +
`config.json`), which every `--vq` option then accepts: build-tokenizer, tokenize, generate, vq-eval.
"""

from __future__ import annotations

import argparse

NAME = "import-vq"
HELP = "import a released image tokenizer (LlamaGen VQ) as a radllm tokenizer directory"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--llamagen", required=True, metavar="CKPT",
                        help="LlamaGen checkpoint: vq_ds16_c2i.pt (read with torch.load(weights_only=True)) or a .safetensors state dict")
    parser.add_argument("--out", required=True, help="tokenizer directory to write (replaced atomically)")
    parser.add_argument("--image-size", type=int, default=256,
                        help="pixels per side radiographs are resized to before encoding (default 256; a multiple of the downsampling factor)")
    parser.add_argument("--preset", default="vq-16", help="LlamaGen architecture: vq-16 (default) or vq-8")


def run(args: argparse.Namespace) -> int:
    from radllm.vq.llamagen import import_llamagen, load_llamagen_config

    out = import_llamagen(args.llamagen, args.out, image_size=args.image_size, preset=args.preset)
    config = load_llamagen_config(out)
    print(f"wrote {out}: LlamaGen {args.preset}, {config.image_size} px -> {config.grid_size}x{config.grid_size} codes of {config.codebook_size}")
    return 0
