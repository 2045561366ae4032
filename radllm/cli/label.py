"""`radllm label`: CheXpert-style labels (1 / 0 / -1 / null for 14 observations) for free-text reports.

    radllm label reports.jsonl --out labels.jsonl          # JSONL with "text" or "report"
    radllm label data/phantoms/manifest.jsonl --out labels.jsonl
    radllm label reports.txt --out labels.jsonl            # one report per line
"""

from __future__ import annotations

import argparse

from radllm.labeler.records import label_file

NAME = "label"
HELP = "label free-text radiology reports with the 14 CheXpert observations (rule-based)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "IN is JSONL (.jsonl/.json/.ndjson) with the report under 'text' or 'report' (a manifest's report "
        "object works too), or any other file with one report per line. Each output line keeps the "
        "input's id fields (id, key, *_id; 'line' for plain text) and adds "
        "\"labels\": {observation: 1 positive | 0 negative | -1 uncertain | null not mentioned}."
    )
    parser.add_argument("input", metavar="IN", help="JSONL of reports or a text file with one report per line")
    parser.add_argument("--out", required=True, help="output JSONL (written atomically)")
    parser.add_argument("--labeler", default=None, metavar="DIR",
                        help="a local HF model directory to label with instead of the rules (radllm.labeler.model_labeler)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    count = label_file(args.input, args.out, progress=not args.no_progress, labeler_dir=args.labeler)
    print(f"labelled {count} reports -> {args.out}")
    return 0
