"""`radllm phantoms`: write the procedural chest X-ray dataset (images, manifest, labels).

    radllm phantoms --out data/phantoms --n 2000 --size 256 --seed 0 --workers 2
"""

from __future__ import annotations

import argparse

from radllm.manifest import SPLITS
from radllm.phantoms.dataset import generate_phantoms, split_counts

NAME = "phantoms"
HELP = "generate phantom chest X-rays with known findings, IU X-Ray-style reports and CheXpert labels"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Writes OUT/images/<study_id>.png (8-bit grayscale PA views), OUT/manifest.jsonl (reports, "
        "CheXpert labels 1/0/-1/null, finding details in meta), OUT/labels.csv and OUT/phantoms.json. "
        "Splits are 80/10/10 train/val/test, shuffled within each block of 10 consecutive studies, unless --split "
        "puts every study in one split (make demo's unseen test set: --seed 1 --split test)."
    )
    parser.add_argument("--out", required=True, help="output directory (new, empty, or an earlier phantom dataset with --overwrite)")
    parser.add_argument("--n", type=int, required=True, help="number of studies")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; same seed, same bytes (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes; output does not depend on it (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing phantom dataset at --out")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="put every study in this split (e.g. test: an unseen evaluation set drawn with another seed)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    manifest = generate_phantoms(
        args.out,
        n=args.n,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        split=args.split,
    )
    counts = ", ".join(f"{split} {count}" for split, count in split_counts(manifest).items())
    print(f"wrote {args.n} phantom studies ({counts}) to {manifest}")
    return 0
