"""The closing table of `make demo`: the headline figures of one or two evaluations, side by side.

    radllm demo-table --metrics runs/demo/eval/metrics.json --unseen-metrics runs/demo/unseen/eval/metrics.json \
        --timings runs/demo/timings.tsv

Reads the flat keys of `radllm evaluate`'s metrics.json (README "Evaluation"). Reports: strict and
CheXpert-convention clinical F1, F1 without "No Finding", macro F1, the findings section alone,
and coherence (self-contradiction, repetition, side consistency, side of found findings, distinct
reports) for the model, the baselines (always normal, nearest by codes, the code probe written
into a template), the shuffled-image control and the reference reports; then the paired-bootstrap
intervals of strict F1, model − row. Then VQA (macro AUROC first, beside the no-image answer prior
and the shuffled control), generated images (F1 of the requested findings beside an image that
shows nothing and a normal radiograph) and held-out report perplexity. With an unseen set (phantoms
of another seed that no choice has seen) every block is repeated for it. A key missing from the file
is shown as "-" (a run without that task, or evaluated with --bootstrap 0), so the table never
invents a value.
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
from radllm.evaluation.keys import ABSENT_IMAGES, REFERENCE, set_key, set_label

#: (label, prediction-set name) of each report line: the model ("") first, then the baselines, the control, the references.
REPORT_ROWS = (
    ("model (stage 2, L2)", ""),
    *((set_label(name), name) for name in ("baseline_normal", "baseline_nearest", "baseline_probe", "shuffled", REFERENCE)),
)
#: (column header, metric) of the report lines.
REPORT_COLUMNS = (
    ("strict F1", "ce_f1_micro_present_strict"),  # micro over observations with a positive reference, contradictions as errors
    ("CheXpert F1", "ce_f1_micro_present"),
    ("F1 w/o NF", "ce_f1_micro_present_excl_no_finding"),
    ("F1 macro", "ce_f1_macro_present"),
    ("findings F1", "findings_section/ce_f1_micro_present"),
    ("contradicts", "contradiction_rate"),
    ("repeats", "repeat_rate"),
    ("side agrees", "side_consistency"),
    ("side right", "side_match"),
    ("distinct", "distinct_fraction"),
)
#: The metric whose intervals the second report block shows.
INTERVAL_METRIC = "ce_f1_micro_present_strict"
#: (label, key) of the single-value lines (with their interval where metrics.json has one).
OTHER_ROWS = (
    ("VQA AUROC macro", "vqa/auroc_macro"),
    ("VQA AUROC macro: no-image answer prior", "vqa/baseline_prior/auroc_macro"),
    ("VQA AUROC macro: shuffled-image control", "vqa/shuffled/auroc_macro"),
    ("VQA AUROC macro: model - prior", f"vqa/{DIFF}/baseline_prior/auroc_macro"),
    ("VQA AUROC micro", "vqa/auroc_micro"),
    ("VQA AUROC micro: no-image answer prior", "vqa/baseline_prior/auroc_micro"),
    ("images: F1 of requested findings", "image/gen_clinical_f1_micro"),
    ("images: the same, an image showing nothing", f"image/{ABSENT_IMAGES}/gen_clinical_f1_micro"),
    ("images: the same, one normal radiograph", "image/baseline_normal/gen_clinical_f1_micro"),
    ("images: model - normal radiograph", f"image/{DIFF}/baseline_normal/gen_clinical_f1_micro"),
    ("images: agreement with requested findings", "image/gen_clinical_agreement"),
    ("images: agreement, an image showing nothing", f"image/{ABSENT_IMAGES}/gen_clinical_agreement"),
    ("report perplexity: pretrained LM", "perplexity/pretrained"),
    ("report perplexity: the demo model (L2 and text replay)", "perplexity/stage2_l2"),
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


def _report_block(metrics: Mapping[str, Any], title: str, label_width: int) -> list[str]:
    n = metrics.get("report/n_studies")
    header = f"{title + (f' ({n} studies)' if n else ''):{label_width}s}"
    lines = [header + "".join(f"  {name:>11s}" for name, _ in REPORT_COLUMNS)]
    for label, name in REPORT_ROWS:
        cells = [metrics.get(set_key("report", name, metric)) for _, metric in REPORT_COLUMNS]
        if all(cell is None for cell in cells) and name:
            continue  # a set this evaluation was not given
        lines.append(f"{label:{label_width}s}" + "".join(f"  {_cell(cell):>11s}" for cell in cells))
    return lines


def _interval_block(metrics: Mapping[str, Any], title: str, label_width: int) -> list[str]:
    resamples = metrics.get("eval/bootstrap")
    lines = [f"{title + (f' ({resamples} resamples)' if resamples else ''):{label_width}s}"
             f"  {'own':>16s}  {'model - row':>12s}  {'paired 95% CI':>16s}"]
    for label, name in REPORT_ROWS:
        if name == REFERENCE or (name and set_key("report", name, INTERVAL_METRIC) not in metrics):
            continue
        own = _interval(metrics, set_key("report", name, INTERVAL_METRIC))
        diff = f"report/{DIFF}/{name}/{INTERVAL_METRIC}"
        difference, paired = (_cell(metrics.get(diff), signed=True), _interval(metrics, diff, signed=True)) if name else ("", "")
        lines.append(f"{label:{label_width}s}  {own:>16s}  {difference:>12s}  {paired:>16s}".rstrip())
    return lines


def format_table(metrics: Mapping[str, Any], timings: Mapping[str, float] | None = None, unseen: Mapping[str, Any] | None = None) -> str:
    """The demo's closing table as plain text: report blocks, strict-F1 intervals, one line per other
    figure (a column each for the test split and, when given, the `unseen` set)."""
    sets = [("test split", metrics)] + ([("unseen set", unseen)] if unseen is not None else [])
    label_width = max(len(label) for label, _ in (*REPORT_ROWS, *OTHER_ROWS, ("strict F1, 95% CI (1000 resamples)", "")))
    lines: list[str] = []
    for title, values in sets:
        lines += _report_block(values, f"reports, {title}", label_width) + [""]
    for title, values in sets:
        lines += _interval_block(values, f"strict F1 95% CI, {title}", label_width) + [""]
    lines.append(f"{'':{label_width}s}" + "".join(f"  {title:>28s}" for title, _ in sets))
    for label, key in OTHER_ROWS:
        signed = f"/{DIFF}/" in key
        cells = []
        for _, values in sets:
            interval = _interval(values, key, signed=signed)
            cells.append(_cell(values.get(key), signed=signed) + (f" {interval}" if interval != "-" else ""))
        lines.append(f"{label:{label_width}s}" + "".join(f"  {cell:>28s}" for cell in cells))
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
