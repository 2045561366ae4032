"""`radllm baselines`: "always normal" and "nearest training report by image codes" predictions.

    radllm baselines --shards runs/demo/shards --out runs/demo/baselines [--split test] [--reference-split train]
    radllm evaluate --pred GEN.jsonl --pred baseline_normal=runs/demo/baselines/baseline_normal.jsonl \\
        --pred baseline_nearest=runs/demo/baselines/baseline_nearest.jsonl --ref M --out runs/demo/eval
"""

from __future__ import annotations

import argparse

from radllm.evaluation.baselines import NORMAL_REPORT, SIMILARITY, write_baselines

NAME = "baselines"
HELP = "write report baselines (always normal; nearest training study by image codes) as prediction JSONL"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        f"Writes OUT/baseline_normal.jsonl, OUT/baseline_nearest.jsonl (records like `radllm generate --task reports`, "
        f"score them with `radllm evaluate --pred NAME=FILE`) and OUT/baselines.json (the normal text, the similarity: "
        f"{SIMILARITY}). Default normal report: {NORMAL_REPORT!r}"
    )
    parser.add_argument("--shards", required=True, help="tokenized shards directory (radllm tokenize) with index.json")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--split", default="test", help="studies to predict for (default test)")
    parser.add_argument("--reference-split", default="train", help="studies whose reports are retrieved (default train)")
    parser.add_argument("--normal-text", default=NORMAL_REPORT, help="report text of the always-normal baseline")


def run(args: argparse.Namespace) -> int:
    paths = write_baselines(args.shards, args.out, args.split, args.reference_split, args.normal_text)
    for name, path in paths.items():
        print(f"{name:18s} {path}")
    return 0
