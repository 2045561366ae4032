"""Fraction of real tokens per batch: packed rows vs. batches padded to their longest example.

    .venv/bin/python benchmarks/packing.py                      # synthetic phantom + MIMIC-like lengths
    .venv/bin/python benchmarks/packing.py --seq-len 4096 --batch-size 4
    .venv/bin/python benchmarks/packing.py --manifest data/phantoms/manifest.jsonl --tokenizer runs/tokenizer

Example lengths follow the stage-1 task layouts (see radllm/tasks): with an image block of
B = grid² + 2 tokens and a report of R tokens,
    report generation: 1 + B·views + R + 1      image generation: 1 + R + B   (CFG-dropped: 1 + B)
drawn 50/50, with 10% of image examples unconditional. Report lengths come from
- phantom-like: R uniform in [40, 120] tokens, one frontal view; or, with --manifest and
  --tokenizer, the manifest's reports tokenized by that tokenizer and its view counts;
- MIMIC-like: words ~ lognormal(median 60, σ 0.6) clipped to [5, 500], R = round(1.3·words),
  views 1/2/3 with probability 0.6/0.35/0.05, at most 2 shown (TaskMixConfig.max_views).
Prints fractions only; nothing is timed.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence

import numpy as np

from radllm.packing import PackedRow, PackingStats, pack_examples, pack_stream
from radllm.tasks.example import IGNORE_INDEX, TaskExample


def task_lengths(report_lengths: Sequence[int], views: Sequence[int], block: int, rng: random.Random) -> list[int]:
    """Stage-1 example length for each (report, views) pair, task drawn 50/50."""
    lengths = []
    for report, n_views in zip(report_lengths, views):
        if rng.random() < 0.5:
            lengths.append(1 + block * n_views + report + 1)
        else:
            lengths.append(1 + block if rng.random() < 0.1 else 1 + report + block)
    return lengths


def phantom_like(n: int, block: int, rng: random.Random) -> list[int]:
    return task_lengths([rng.randint(40, 120) for _ in range(n)], [1] * n, block, rng)


def mimic_like(n: int, block: int, rng: random.Random, max_views: int = 2) -> list[int]:
    np_rng = np.random.default_rng(rng.randrange(2**32))
    words = np.clip(np.exp(np_rng.normal(np.log(60.0), 0.6, size=n)), 5, 500)
    reports = np.round(1.3 * words).astype(int).tolist()
    views = np.minimum(np_rng.choice([1, 2, 3], size=n, p=[0.6, 0.35, 0.05]), max_views).tolist()
    return task_lengths(reports, views, block, rng)


def manifest_lengths(manifest: str, tokenizer_dir: str, block: int, max_views: int, rng: random.Random) -> list[int]:
    from transformers import AutoTokenizer

    from radllm.manifest import read_manifest

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    studies = read_manifest(manifest)
    reports = [len(tokenizer(s.report.text, add_special_tokens=False)["input_ids"]) for s in studies]
    views = [min(max(len(s.images), 1), max_views) for s in studies]
    return task_lengths(reports, views, block, rng)


def examples_of(lengths: Sequence[int]) -> list[TaskExample]:
    """Placeholder token ids of the given lengths (packing looks at lengths and labels only)."""
    return [TaskExample([1] * n, [IGNORE_INDEX] + [1] * (n - 1), "bench", str(i)) for i, n in enumerate(lengths)]


def batch_fractions(real: Sequence[int], slots: Sequence[int], batch_size: int) -> tuple[float, list[float]]:
    """Overall and per-batch fraction of real tokens, given each item's real and allocated tokens."""
    per_batch = [sum(real[s : s + batch_size]) / sum(slots[s : s + batch_size]) for s in range(0, len(real), batch_size)]
    return sum(real) / sum(slots), per_batch


def padded_to_longest(lengths: Sequence[int], batch_size: int) -> tuple[float, list[float]]:
    """Each batch of `batch_size` examples padded to its longest example."""
    slots = [max(lengths[s : s + batch_size]) for s in range(0, len(lengths), batch_size) for _ in lengths[s : s + batch_size]]
    return batch_fractions(lengths, slots, batch_size)


def packed(rows: Sequence[PackedRow], batch_size: int) -> tuple[float, list[float]]:
    """Batches of `batch_size` packed rows."""
    return batch_fractions([r.n_real for r in rows], [r.seq_len for r in rows], batch_size)


def report(name: str, lengths: list[int], args: argparse.Namespace) -> None:
    examples = examples_of(lengths)
    whole, streamed = PackingStats(), PackingStats()
    rows = pack_examples(examples, args.seq_len, pad_id=0, stats=whole)
    stream_rows = list(pack_stream(examples, args.seq_len, pad_id=0, buffer_size=args.buffer_size, stats=streamed))
    print(
        f"\n{name}: {len(lengths)} examples, length median {int(np.median(lengths))}, "
        f"p99 {int(np.percentile(lengths, 99))}, max {max(lengths)}; seq_len {args.seq_len}, batch {args.batch_size}"
    )
    print(f"  {'method':<34} {'overall':>8} {'mean/batch':>11} {'min/batch':>10}")
    for label, (overall, per_batch) in (
        ("padded to longest in batch", padded_to_longest(lengths, args.batch_size)),
        ("packed, whole set at once", packed(rows, args.batch_size)),
        (f"packed, stream (buffer {args.buffer_size})", packed(stream_rows, args.batch_size)),
    ):
        print(f"  {label:<34} {overall:>8.4f} {np.mean(per_batch):>11.4f} {min(per_batch):>10.4f}")
    if whole.dropped_too_long:
        print(f"  ({whole.dropped_too_long} examples longer than seq_len dropped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-len", type=int, default=2048, help="packed row length (default 2048)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows (packed) or examples (padded) per batch")
    parser.add_argument("--buffer-size", type=int, default=512, help="examples per buffer of the streaming packer")
    parser.add_argument("--n", type=int, default=20000, help="examples per distribution")
    parser.add_argument("--grid", type=int, default=16, help="VQ code grid side (image block = grid² + 2 tokens)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manifest", help="study manifest (JSONL) to take report lengths and view counts from")
    parser.add_argument("--tokenizer", help="local HF tokenizer directory used with --manifest")
    args = parser.parse_args()
    if bool(args.manifest) != bool(args.tokenizer):
        parser.error("--manifest and --tokenizer go together")
    block = args.grid * args.grid + 2
    rng = random.Random(args.seed)
    if args.manifest:
        report(f"manifest {args.manifest}", manifest_lengths(args.manifest, args.tokenizer, block, 2, rng), args)
    else:
        report("phantom-like (synthetic)", phantom_like(args.n, block, rng), args)
    report("MIMIC-like (synthetic)", mimic_like(args.n, block, rng), args)


if __name__ == "__main__":
    main()
