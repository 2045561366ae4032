"""The closing table of `make demo`: the headline figures of one evaluation, side by side.

    radllm demo-table --metrics runs/demo/eval/metrics.json --timings runs/demo/timings.tsv

Reads the flat keys of `radllm evaluate`'s metrics.json (README "Evaluation"): clinical F1 of the
model's reports against the two baselines scored in the same run, clinical agreement of generated
images with the requested findings, VQA accuracy / AUROC and held-out report perplexity of the
pretrained LM and of stage 2 with and without the L2 pull. A key missing from the file is shown
as "-" (a run without that task), so the table never invents a value.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError

#: (label, metrics.json key) of each report line; the model first, then the baselines.
REPORT_ROWS = (
    ("model (stage 2, L2)", "report/{metric}"),
    ("baseline: always normal", "report/baseline_normal/{metric}"),
    ("baseline: nearest train study by codes", "report/baseline_nearest/{metric}"),
)
#: (column header, metric) of the report lines.
REPORT_COLUMNS = (
    ("CE F1 present", "ce_f1_micro_present"),  # micro over observations with a positive reference
    ("CE F1 14", "ce_f1_micro_14"),
    ("BLEU-4", "bleu_4"),
)
#: (label, key) of the single-value lines.
OTHER_ROWS = (
    ("images: clinical agreement with requested findings", "image/gen_clinical_agreement"),
    ("images: clinical F1 micro of requested findings", "image/gen_clinical_f1_micro"),
    ("VQA accuracy", "vqa/accuracy"),
    ("VQA AUROC micro", "vqa/auroc_micro"),
    ("report perplexity: pretrained LM", "perplexity/pretrained"),
    ("report perplexity: stage 2 with L2", "perplexity/stage2_l2"),
    ("report perplexity: stage 2 without L2", "perplexity/stage2_no_l2"),
)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.3f}"
    return "-"


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The flat metrics object of `radllm evaluate`.

    Raises:
        RadllmError: the file is missing, not JSON, or not an object.
    """
    path = Path(path)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RadllmError(f"metrics file {path} does not exist (run `radllm evaluate` first)") from err
    except json.JSONDecodeError as err:
        raise RadllmError(f"metrics file {path} is not valid JSON: {err}") from err
    if not isinstance(metrics, dict):
        raise RadllmError(f"metrics file {path}: expected a JSON object of flat keys, got {type(metrics).__name__}")
    return metrics


def read_timings(path: str | os.PathLike) -> dict[str, float]:
    """``step<TAB>seconds`` lines (the Makefile appends one per finished step); a rerun step keeps its last time.

    Raises:
        RadllmError: a line that is not a step name and a number of seconds.
    """
    timings: dict[str, float] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) != 2:
                raise ValueError
            timings[parts[0]] = float(parts[1])
        except ValueError as err:
            raise RadllmError(f"{path} line {number}: {line!r}; expected '<step>\\t<seconds>'") from err
    return timings


def format_table(metrics: Mapping[str, Any], timings: Mapping[str, float] | None = None) -> str:
    """The demo's closing table as plain text (one block for reports, one line per other figure)."""
    label_width = max(len(label) for label, _ in (*REPORT_ROWS, *OTHER_ROWS))
    n = metrics.get("report/n_studies")
    header = f"{'reports' + (f' ({n} test studies)' if n else ''):{label_width}s}"
    lines = [header + "".join(f"  {title:>14s}" for title, _ in REPORT_COLUMNS)]
    for label, pattern in REPORT_ROWS:
        cells = "".join(f"  {_cell(metrics.get(pattern.format(metric=metric))):>14s}" for _, metric in REPORT_COLUMNS)
        lines.append(f"{label:{label_width}s}{cells}")
    lines.append("")
    lines.extend(f"{label:{label_width}s}  {_cell(metrics.get(key)):>14s}" for label, key in OTHER_ROWS)
    if timings:
        lines.append("")
        lines.append(format_timings(timings))
    return "\n".join(lines)


def format_timings(timings: Mapping[str, float], per_line: int = 6) -> str:
    """``step time (s): a 12 | b 30 ...`` wrapped every `per_line` steps, then the total in minutes."""
    items = [f"{name} {seconds:.0f}" for name, seconds in timings.items()]
    rows: Sequence[str] = [" | ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    total = sum(timings.values())
    return "step wall time (s): " + "\n                    ".join(rows) + f"\ntotal: {total / 60:.1f} min"
