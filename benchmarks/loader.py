"""Throughput of the streaming shard reader, and what restoring a mid-epoch position costs.

    .venv/bin/python benchmarks/loader.py --samples 4000 --shard-size 500

Writes synthetic shards of realistic size (16x16 = 256 int16 codes per view, one or two views,
~100-token reports with their text) to a temporary directory, then reads one epoch through
`ShardLoader` with 0 (main process), 1 and 2 DataLoader workers and prints samples/s, and the
time from `load_state_dict` at mid-epoch to the first batch (the replay described in
`radllm.data.reader`). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from radllm.data.reader import ShardLoader, ShardStream
from radllm.data.sample import TokenizedStudy
from radllm.data.shards import write_split_shards
from radllm.labels import OBSERVATIONS
from radllm.vocab_spec import VisualVocabSpec

SPEC = VisualVocabSpec(
    codebook_size=1024, grid_height=16, grid_width=16, image_size=256, token_offset=32002,
    boi_id=32000, eoi_id=32001, text_vocab_size=32000, vocab_size=33088,
)
WORDS = "the heart size is normal no focal consolidation pleural effusion or pneumothorax lungs are clear".split()


def synthetic_study(n: int, rng: np.random.Generator) -> TokenizedStudy:
    views = ["PA", "LATERAL"][: 1 + n % 2]
    length = int(rng.integers(80, 120))
    return TokenizedStudy(
        key=f"s{n:08d}",
        study_id=f"s{n:08d}",
        split="train",
        image_codes=[rng.integers(0, SPEC.codebook_size, (16, 16)).astype(np.int16) for _ in views],
        views=views,
        report=" ".join(rng.choice(WORDS, length)),
        report_ids=rng.integers(0, SPEC.text_vocab_size, length).astype(np.int32),
        labels={name: int(rng.choice([1, 0, -1])) for name in OBSERVATIONS[:5]},
        meta={"age": int(rng.integers(20, 90))},
    )


def epoch_rate(directory: Path, num_workers: int, batch_size: int) -> tuple[float, int]:
    loader = ShardLoader(ShardStream(directory, "train", seed=0), batch_size, num_workers=num_workers)
    start = time.perf_counter()
    count = sum(len(batch) for batch in loader)
    return count / (time.perf_counter() - start), count


def restore_seconds(directory: Path, num_workers: int, batch_size: int) -> tuple[float, int]:
    """Seconds from restoring a mid-epoch state to the first batch after it."""
    loader = ShardLoader(ShardStream(directory, "train", seed=0), batch_size, num_workers=num_workers)
    half = loader.batches_per_epoch() // 2
    for i, _ in enumerate(loader):
        if i + 1 == half:
            break
    state = loader.state_dict()
    restored = ShardLoader(ShardStream(directory, "train", seed=0), batch_size, num_workers=num_workers)
    restored.load_state_dict(state)
    start = time.perf_counter()
    next(iter(restored))
    return time.perf_counter() - start, sum(state["consumed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        studies = [synthetic_study(n, rng) for n in range(args.samples)]
        shards = [studies[i : i + args.shard_size] for i in range(0, len(studies), args.shard_size)]
        write_split_shards(directory, {"train": shards}, SPEC)
        size = sum(p.stat().st_size for p in directory.glob("*.tar"))
        print(f"{args.samples} samples in {len(shards)} shards, {size / args.samples / 1024:.1f} KiB/sample")
        base = None
        for workers in (0, 1, 2):
            rate, count = epoch_rate(directory, workers, args.batch_size)
            base = base or rate
            print(f"num_workers={workers}: {rate:8.0f} samples/s ({count} samples, {rate / base:.2f}x of main-process reading)")
        seconds, replayed = restore_seconds(directory, 2, args.batch_size)
        print(f"restore at mid-epoch (2 workers): {seconds:.2f} s to the first batch, replaying {replayed} samples")


if __name__ == "__main__":
    main()
