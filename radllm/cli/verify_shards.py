"""`radllm verify-shards`: check a shards directory against the sha256 and sample counts in its index.

    radllm verify-shards runs/demo/shards
"""

from __future__ import annotations

import argparse

from radllm.data.shards import verify_shards
from radllm.errors import RadllmError

NAME = "verify-shards"
HELP = "check every shard listed in index.json against its recorded sha256 and sample count"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Exit 0 when every listed shard has its recorded sha256 and sample count; otherwise exit 2 with one "
        "line per bad shard. index.json itself is validated as training reads it (shard names must be plain "
        "file names inside the directory)."
    )
    parser.add_argument("shards", help="tokenized shards directory (radllm tokenize) with index.json")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    checked, problems = verify_shards(args.shards, progress=not args.no_progress)
    if problems:
        raise RadllmError(f"{len(problems)} of {checked} shard(s) in {args.shards} do not match index.json:\n  " + "\n  ".join(problems))
    print(f"{checked} shard(s) in {args.shards} match index.json")
    return 0
