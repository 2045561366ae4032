"""Learning curves of training runs for report.html, read from each run's ``metrics.jsonl``.

    radllm evaluate ... --run-dir stage1=runs/demo/stage1 --run-dir stage2=runs/demo/stage2

The trainer (`radllm.training.run_log.MetricsLog`) appends one JSON object per optimizer step
(``"kind": "train"``, with ``loss``) and per evaluation (``"kind": "eval"``, with ``loss``, the
scored report samples under ``samples`` and, where measured, the own- vs shuffled-image
diagnostics under ``grounding``); nested objects are read as ``a/b`` keys, as tensorboard shows
them. A resumed run may log a step twice: the last record of a step wins. A torn last line (a
killed run) is ignored.

The charts (`curve_panels`): train loss, eval loss, the samples' clinical F1, contradictions and
side consistency, held-out text perplexity (each where logged) and every ``grounding/...`` key
found, one line per run. The grounding keys that answer "is it reading the
image?" (`GROUNDING_HEADLINE`: the gain in nats and the fraction of studies better with their own
image, with the line a model that ignores the image sits on) come first; the others (NLLs,
counts) are marked `detail` for the page to fold away. Train losses of long runs are averaged
over consecutive steps down to `MAX_POINTS` points per line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radllm.errors import RadllmError
from radllm.generation.records import read_records
from radllm.training.run_log import METRICS_FILENAME, flatten_record

MAX_POINTS = 400
#: (record kind, flattened key, chart title) of the fixed charts, in page order.
FIXED_CURVES = (
    ("train", "loss", "train loss"),
    ("eval", "loss", "eval loss (held-out rows)"),
    ("eval", "samples/f1_micro_present", "samples: clinical F1 micro (present)"),
    ("eval", "samples/contradiction_rate", "samples: reports that contradict themselves"),
    ("eval", "samples/side_consistency", "samples: same side in findings and impression"),
    ("eval", "text_perplexity/perplexity", "held-out text perplexity (pretrained LM task)"),
)
GROUNDING_PREFIX = "grounding/"
#: Last key segment of the grounding charts shown first -> the value of a model that ignores its image.
GROUNDING_HEADLINE = {"gain_nats": 0.0, "frac_better": 0.5}

Points = list[tuple[float, float]]


@dataclass
class RunLog:
    """The numeric series of one run, by record kind and flattened key, in step order."""

    name: str
    series: dict[tuple[str, str], Points]  # (kind, key) -> [(step, value)]


@dataclass
class Panel:
    """One chart: a title and one line per run."""

    title: str
    lines: dict[str, Points]
    reference: float | None = None  # a horizontal line to read the curves against (chance level)
    detail: bool = False  # secondary: the page may fold it away


def read_run(name: str, run_dir: str | os.PathLike) -> RunLog:
    """Every numeric key of `run_dir`'s metrics.jsonl.

    Raises:
        RadllmError: no metrics.jsonl in `run_dir`, or a line that is not a JSON object (file:line named).
    """
    path = Path(run_dir) / METRICS_FILENAME
    if not path.is_file():
        raise RadllmError(f"--run-dir {run_dir}: no {METRICS_FILENAME} (expected a training run_dir, e.g. runs/demo/stage1)")
    by_step: dict[tuple[str, int], dict] = {}
    for record in read_records(path):
        if record.get("kind") in ("train", "eval") and isinstance(record.get("step"), int):
            by_step[record["kind"], record["step"]] = flatten_record(record)  # a replayed step: the last record wins
    series: dict[tuple[str, str], Points] = {}
    for (kind, step), record in sorted(by_step.items(), key=lambda item: item[0][1]):
        for key, value in record.items():
            if key not in ("step", "kind") and isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
                series.setdefault((kind, key), []).append((float(step), float(value)))
    return RunLog(name, series)


def read_runs(run_dirs: Mapping[str, str | os.PathLike]) -> list[RunLog]:
    """`read_run` of every {name: run_dir}."""
    return [read_run(name, path) for name, path in run_dirs.items()]


def thin(points: Points, max_points: int = MAX_POINTS) -> Points:
    """`points` averaged over runs of consecutive points so that at most `max_points` remain (noise-free shape of long curves)."""
    if len(points) <= max_points:
        return list(points)
    size = -(-len(points) // max_points)  # ceil
    data = np.asarray(points, dtype=np.float64)
    return [(float(x), float(y)) for x, y in (data[i : i + size].mean(axis=0) for i in range(0, len(data), size))]


def curve_panels(runs: Sequence[RunLog]) -> list[Panel]:
    """The fixed charts present in any run, the headline grounding keys, then every other ``grounding/...`` key (`detail`)."""
    panels = []
    for kind, key, title in FIXED_CURVES:
        lines = {run.name: thin(run.series[kind, key]) for run in runs if (kind, key) in run.series}
        if lines:
            panels.append(Panel(title, lines))
    grounding = sorted({key for run in runs for kind, key in run.series if kind == "eval" and key.startswith(GROUNDING_PREFIX)})
    last = {key: key.rsplit("/", 1)[-1] for key in grounding}
    for key in sorted(grounding, key=lambda k: last[k] not in GROUNDING_HEADLINE):  # stable: headline keys first
        lines = {run.name: run.series["eval", key] for run in runs if ("eval", key) in run.series}
        panels.append(Panel(key, lines, GROUNDING_HEADLINE.get(last[key]), detail=last[key] not in GROUNDING_HEADLINE))
    return panels
