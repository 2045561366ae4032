"""`radllm build-tokenizer`: extend a text tokenizer with the VQ-GAN's visual vocabulary.

    radllm build-tokenizer --base models/llama --vq runs/vq --out runs/tokenizer
    radllm build-tokenizer --train-sentencepiece --corpus data/manifest.jsonl --vocab-size 8000 \\
        --vq runs/vq --out runs/tokenizer
"""

from __future__ import annotations

import argparse

from radllm.errors import RadllmError
from radllm.vocab.extend import DEFAULT_PAD_MULTIPLE, build_tokenizer
from radllm.vocab.sentencepiece_tokenizer import build_sentencepiece_tokenizer

NAME = "build-tokenizer"
HELP = "append <boi>, <eoi> and one <img_k> token per VQ code to a text tokenizer (or a new SentencePiece one)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  radllm build-tokenizer --base models/llama --vq runs/vq --out runs/tokenizer\n"
        "  radllm build-tokenizer --train-sentencepiece --corpus data/manifest.jsonl --vocab-size 8000 \\\n"
        "      --vq runs/vq --out runs/tokenizer\n\n"
        "The output directory holds the Hugging Face tokenizer files (AutoTokenizer.from_pretrained loads it)\n"
        "and radllm.json, the visual vocab spec: token ids of <boi>/<eoi>/<img_0>, codebook and grid size,\n"
        "embedding rows (padded) and the hashes of the VQ weights and the base tokenizer."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--base", metavar="TOKENIZER_DIR", help="local Hugging Face tokenizer (or model) directory to extend")
    source.add_argument(
        "--train-sentencepiece",
        action="store_true",
        help="train a SentencePiece BPE tokenizer on the reports of --corpus instead of extending --base",
    )
    parser.add_argument("--corpus", metavar="MANIFEST", help="study manifest (JSONL) whose report texts train SentencePiece")
    parser.add_argument("--vocab-size", type=int, metavar="N", help="SentencePiece vocabulary size (incl. 256 byte pieces)")
    parser.add_argument(
        "--splits", nargs="+", default=["train"], metavar="SPLIT", help="manifest splits SentencePiece trains on (default: train)"
    )
    parser.add_argument("--threads", type=int, default=1, help="SentencePiece training threads (default: 1)")
    parser.add_argument("--vq", required=True, metavar="VQ_DIR", help="VQ-GAN checkpoint directory (config.json + weights)")
    parser.add_argument("--out", required=True, metavar="TOK_DIR", help="output tokenizer directory, written atomically")
    parser.add_argument(
        "--pad-multiple",
        type=int,
        default=DEFAULT_PAD_MULTIPLE,
        help=f"pad the embedding rows to a multiple of this (default: {DEFAULT_PAD_MULTIPLE})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    if args.train_sentencepiece:
        if not args.corpus or args.vocab_size is None:
            raise RadllmError("--train-sentencepiece needs --corpus MANIFEST and --vocab-size N")
        spec = build_sentencepiece_tokenizer(
            args.corpus, args.vq, args.out, args.vocab_size, splits=args.splits,
            pad_multiple=args.pad_multiple, overwrite=args.overwrite, num_threads=args.threads,
        )
    else:
        if args.corpus or args.vocab_size is not None:
            raise RadllmError("--corpus and --vocab-size only apply with --train-sentencepiece, not with --base")
        spec = build_tokenizer(args.base, args.vq, args.out, pad_multiple=args.pad_multiple, overwrite=args.overwrite)
    print(
        f"{args.out}: {spec.text_vocab_size} text tokens, <boi>={spec.boi_id}, <eoi>={spec.eoi_id}, "
        f"<img_0..{spec.codebook_size - 1}>={spec.token_offset}..{spec.token_offset + spec.codebook_size - 1}, "
        f"{spec.vocab_size} embedding rows"
    )
    return 0
