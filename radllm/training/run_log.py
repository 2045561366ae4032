"""Rank-0 training logs: one JSON line per step (and per evaluation and checkpoint), tensorboard scalars/text, and the progress bar.

`metrics.jsonl` gets every optimizer step (and every evaluation) as one line, flushed at once,
so a run killed with SIGKILL keeps all steps it logged; a resumed run appends and the reader
takes the last record of each step. Tensorboard gets the same numbers every `log_every` steps,
and text (generated-report samples) at evaluations.
Other ranks construct a `MetricsLog` with `enabled=False` and every call is a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

METRICS_FILENAME = "metrics.jsonl"


class MetricsLog:
    def __init__(self, run_dir: str | Path, enabled: bool, total_steps: int, initial_step: int, log_every: int, progress: bool = True) -> None:
        self.enabled = enabled
        self.log_every = log_every
        self._file = None
        self._writer = None
        self._bar = None
        if not enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(run_dir / METRICS_FILENAME, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(run_dir / "tb"), purge_step=initial_step + 1 if initial_step else None)
        self._bar = tqdm(total=total_steps, initial=initial_step, desc="train", dynamic_ncols=True, disable=not progress)

    def step(self, step: int, record: dict[str, Any]) -> None:
        """Log one optimizer step (`record` holds plain numbers; nested dicts become `a/b` tags)."""
        if not self.enabled:
            return
        self._write({"kind": "train", "step": step, **record})
        self._bar.update(1)
        if "loss" in record:
            self._bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record.get('lr', 0):.2e}")
        if step % self.log_every == 0:
            self._scalars("train", step, record)

    def eval(self, step: int, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._write({"kind": "eval", "step": step, **record})
        self._scalars("eval", step, record)

    def checkpoint(self, step: int, record: dict[str, Any]) -> None:
        """A checkpoint written at `step` (its seconds and bytes: the grace a pre-emption needs)."""
        if not self.enabled:
            return
        self._write({"kind": "checkpoint", "step": step, **record})
        self._scalars("checkpoint", step, record)

    def text(self, tag: str, step: int, markdown: str) -> None:
        """Tensorboard text (rendered as Markdown), e.g. the generated-report samples of an evaluation."""
        if self.enabled:
            self._writer.add_text(tag, markdown, step)

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def _scalars(self, prefix: str, step: int, record: dict[str, Any]) -> None:
        for key, value in flatten_record(record).items():
            if isinstance(value, int | float) and key != "step":
                self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
            self._writer.close()
            self._file.close()


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A metrics.jsonl record with nested sections as `section/key` names (tensorboard tags, report.html curves)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flatten_record(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_metrics(run_dir: str | Path, kind: str = "train") -> dict[int, dict[str, Any]]:
    """Records of `kind` by step (the last one wins, so a resumed run's records replace replayed ones)."""
    path = Path(run_dir) / METRICS_FILENAME
    records: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("kind") == kind:
                    records[record["step"]] = record
    return records
