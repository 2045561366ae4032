"""`radllm demo-table`: print the closing table of `make demo` from an evaluation's metrics.json.

    radllm demo-table --metrics runs/demo/eval/metrics.json --unseen-metrics runs/demo/unseen/eval/metrics.json \
        --timings runs/demo/timings.tsv
"""

from __future__ import annotations

import argparse

from radllm.evaluation.demo_table import format_table, read_metrics, read_timings

NAME = "demo-table"
HELP = ("print the demo's headline figures (strict clinical F1 and coherence vs baselines and the shuffled-image control, "
        "with intervals; VQA, images, perplexity), for the test split and the unseen set")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Values missing from metrics.json print as '-'. Writes nothing."
    parser.add_argument("--metrics", required=True, help="metrics.json of `radllm evaluate`")
    parser.add_argument("--unseen-metrics", default=None, help="metrics.json of the unseen set (make demo: runs/demo/unseen/eval)")
    parser.add_argument("--timings", default=None, help="optional '<step>\\t<seconds>' file (the Makefile's timings.tsv)")


def run(args: argparse.Namespace) -> int:
    timings = read_timings(args.timings) if args.timings else None
    unseen = read_metrics(args.unseen_metrics) if args.unseen_metrics else None
    print(format_table(read_metrics(args.metrics), timings, unseen))
    return 0
