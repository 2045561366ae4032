"""The closing table of `make demo`: the headline figures of one evaluation, side by side.

    radllm demo-table --metrics runs/demo/eval/metrics.json --timings runs/demo/timings.tsv

Reads the flat keys of `radllm evaluate`'s metrics.json (README "Evaluation"): clinical F1 of the
model's reports (micro and for three findings) against the two baselines and the shuffled-image
control scored in the same run, with the paired-bootstrap intervals of the differences model −
row; clinical agreement of generated images with the requested findings, VQA accuracy / AUROC
(and the shuffled control's) and held-out report perplexity of the pretrained LM and of stage 2
with and without the L2 pull. A key missing from the file is shown as "-" (a run without that
task, or evaluated with --bootstrap 0), so the table never invents a value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from radllm.errors import RadllmError
from radllm.jsonl import read_json_file, read_text_file
from radllm.evaluation.intervals import DIFF
from radllm.evaluation.keys import set_key, set_label

#: (label, prediction-set name) of each report line; the model ("") first, then the baselines and the control.
REPORT_ROWS = (
    ("model (stage 2, L2)", ""),
    *((set_label(name), name) for name in ("baseline_normal", "baseline_nearest", "shuffled")),
)
#: (column header, metric) of the report lines.
REPORT_COLUMNS = (
    ("CE F1 present", "ce_f1_micro_present"),  # micro over observations with a positive reference
    ("CE F1 14", "ce_f1_micro_14"),
    ("BLEU-4", "bleu_4"),
    ("F1 cardiomegaly", "ce_f1/cardiomegaly"),
    ("F1 effusion", "ce_f1/pleural_effusion"),
    ("F1 pneumothorax", "ce_f1/pneumothorax"),
)
#: The metric whose intervals the second report block shows.
INTERVAL_METRIC = "ce_f1_micro_present"
#: (label, key) of the single-value lines (with their interval where metrics.json has one).
OTHER_ROWS = (
    ("images: clinical agreement with requested findings", "image/gen_clinical_agreement"),
    ("images: clinical F1 micro of requested findings", "image/gen_clinical_f1_micro"),
    ("VQA accuracy", "vqa/accuracy"),
    ("VQA AUROC micro", "vqa/auroc_micro"),
    ("VQA AUROC micro: shuffled-image control", "vqa/shuffled/auroc_micro"),
    ("VQA AUROC micro: model - shuffled control", f"vqa/{DIFF}/shuffled/auroc_micro"),
    ("report perplexity: pretrained LM", "perplexity/pretrained"),
    ("report perplexity: stage 2 with L2", "perplexity/stage2_l2"),
    ("report perplexity: stage 2 without L2", "perplexity/stage2_no_l2"),
)


def _cell(value: Any, signed: bool = False) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return "-"


def _interval(metrics: Mapping[str, Any], key: str, signed: bool = False) -> str:
    """``[low, high]`` of `key`'s bootstrap interval, "-" without one."""
    low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
    if _cell(low) == "-" or _cell(high) == "-":
        return "-"
    return f"[{_cell(low, signed)}, {_cell(high, signed)}]"


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """The flat metrics object of `radllm evaluate`.

    Raises:
        RadllmError: the file is missing, not JSON, or not an object.
    """
    path = Path(path)
    metrics = read_json_file(path, "metrics file")
    if not isinstance(metrics, dict):
        raise RadllmError(f"metrics file {path}: expected a JSON object of flat keys, got {type(metrics).__name__}")
    return metrics


def read_timings(path: str | os.PathLike) -> dict[str, float]:
    """``step<TAB>seconds`` lines (the Makefile appends one per finished step); a rerun step keeps its last time.

    Raises:
        RadllmError: a line that is not a step name and a number of seconds.
    """
    timings: dict[str, float] = {}
    for number, line in enumerate(read_text_file(path, "timings file").splitlines(), 1):
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
    lines = [header + "".join(f"  {title:>15s}" for title, _ in REPORT_COLUMNS)]
    for label, name in REPORT_ROWS:
        cells = "".join(f"  {_cell(metrics.get(set_key('report', name, metric))):>15s}" for _, metric in REPORT_COLUMNS)
        lines.append(f"{label:{label_width}s}{cells}")
    resamples = metrics.get("eval/bootstrap")
    lines.append("")
    lines.append(f"{'CE F1 present, 95% CI' + (f' ({resamples} resamples)' if resamples else ''):{label_width}s}"
                 f"  {'own':>16s}  {'model - row':>12s}  {'paired 95% CI':>16s}")
    for label, name in REPORT_ROWS:
        own = _interval(metrics, set_key("report", name, INTERVAL_METRIC))
        diff = f"report/{DIFF}/{name}/{INTERVAL_METRIC}"
        difference, paired = (_cell(metrics.get(diff), signed=True), _interval(metrics, diff, signed=True)) if name else ("", "")
        lines.append(f"{label:{label_width}s}  {own:>16s}  {difference:>12s}  {paired:>16s}".rstrip())
    lines.append("")
    for label, key in OTHER_ROWS:
        interval = _interval(metrics, key, signed=f"/{DIFF}/" in key)
        cell = _cell(metrics.get(key), signed=f"/{DIFF}/" in key)
        lines.append(f"{label:{label_width}s}  {cell:>15s}" + (f"  {interval}" if interval != "-" else ""))
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
