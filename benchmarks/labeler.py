"""Labeler throughput on one core: reports/s of `radllm.labeler.label_report`.

    .venv/bin/python benchmarks/labeler.py                                   # 2,000 phantom reports
    .venv/bin/python benchmarks/labeler.py --manifest data/mimic/manifest.jsonl --n 5000

Phantom reports are drawn exactly as `radllm phantoms` writes them (without rendering images).
Also printed, measured in the same run on the same reports: `clean_report` alone (the cleaning
every report goes through first, a floor for the labeler's cost) and the labeler with its
per-word phrase index replaced by one plain `re` alternation of every phrase (the obvious
implementation, for the speed-up ratio).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Sequence

from radllm.labeler import Labeler
from radllm.labeler.matching import PhraseMatcher
from radllm.phantoms import sample_study, write_report
from radllm.phantoms.dataset import study_rng
from radllm.report_text import clean_report


def phantom_reports(n: int, seed: int) -> list[str]:
    reports = []
    for index in range(n):
        rng = study_rng(seed, index)
        reports.append(write_report(sample_study(rng).findings, rng).text)
    return reports


def manifest_reports(path: str, n: int) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["report"]["text"] for line, _ in zip(fh, range(n))]


class AlternationMatcher:
    """Reference for `PhraseMatcher`: the same phrases as one `re` alternation, via finditer."""

    def __init__(self, matcher: PhraseMatcher) -> None:
        self._tags = list(matcher.phrases.values())
        left = r"(?<![a-z0-9])"
        self._regex = re.compile(
            "|".join(f"({'' if p[0] in ',;:' else left}(?:{p})(?![a-z0-9]))" for p in matcher.phrases)
        )

    def find(self, text: str, words: object = None) -> list[tuple[int, int, frozenset]]:
        return [(m.start(), m.end(), self._tags[m.lastindex - 1]) for m in self._regex.finditer(text)]


def per_second(fn: Callable[[str], object], reports: Sequence[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for report in reports:
            fn(report)
        best = min(best, time.perf_counter() - start)
    return len(reports) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default=None, help="label this manifest's reports instead of phantoms")
    parser.add_argument("--n", type=int, default=2000, help="number of reports")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed")
    args = parser.parse_args()
    reports = manifest_reports(args.manifest, args.n) if args.manifest else phantom_reports(args.n, args.seed)
    labeler = Labeler()
    slow = Labeler()
    for name in ("_mentions", "_qualifiers", "_cues", "_stops"):
        setattr(slow, name, AlternationMatcher(getattr(slow, name)))
    assert all(slow.label(r) == labeler.label(r) for r in reports[:200]), "reference labeler disagrees"
    words = sum(len(r.split()) for r in reports) / len(reports)
    fast = per_second(labeler.label, reports)
    reference = per_second(slow.label, reports)
    cleaning = per_second(clean_report, reports)
    print(f"{len(reports)} reports, {words:.0f} words each on average, one core")
    print(f"labeler (per-word phrase index):   {fast:8.0f} reports/s")
    print(f"labeler (one regex alternation):   {reference:8.0f} reports/s   -> index speed-up {fast / reference:.1f}x")
    print(f"clean_report alone:                {cleaning:8.0f} reports/s   (cleaning is {100 * fast / cleaning:.0f}% of the labeler's time)")


if __name__ == "__main__":
    main()
