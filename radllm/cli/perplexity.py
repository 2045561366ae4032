"""`radllm perplexity`: held-out report perplexity of an exported causal LM (text-only LM task).

    radllm perplexity --model runs/demo/text/model --shards runs/demo/shards --split test --out runs/demo/eval/ppl_pretrained.json
"""

from __future__ import annotations

import argparse

from radllm import atomic
from radllm.evaluation.perplexity import report_perplexity

NAME = "perplexity"
HELP = "held-out report perplexity of a model directory on a split of tokenized shards"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Scores every report of the split as the text-only LM task does (start, report, eos) and writes "
        "OUT as JSON: model, shards, split, n_studies, n_tokens, nll (mean nats per target token), "
        "perplexity = exp(nll). Compare only models that share the tokenizer."
    )
    parser.add_argument("--model", required=True, help="model directory exported by radllm (HF files + radllm.json)")
    parser.add_argument("--shards", required=True, help="tokenized shards directory with index.json (same visual vocabulary)")
    parser.add_argument("--split", default="test", help="split to score (default test)")
    parser.add_argument("--out", required=True, help="output JSON file (written atomically)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16")
    parser.add_argument("--tokens-per-row", type=int, default=2048, help="packed row length (default 2048)")
    parser.add_argument("--rows-per-batch", type=int, default=4, help="rows per forward pass (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    result = report_perplexity(
        args.model, args.shards, args.split, args.device, args.dtype, args.tokens_per_row, args.rows_per_batch, not args.no_progress
    )
    atomic.write_json(args.out, result.to_json())
    print(f"perplexity {result.perplexity:.4f} (nll {result.nll:.4f} over {result.n_tokens} tokens of {result.n_studies} reports) "
          f"-> {args.out}")
    return 0
