"""Sweeps: one run config, a list of named `--set` variants, one run directory each, one table.

A user comparing recipes (λ across orders of magnitude, replay shares, a tokenizer loss switched
off) runs the same config many times with a few keys changed. A sweep file names them:

    # sweeps/lambda.yaml
    command: train                      # train (radllm train) or vq-train
    config: configs/demo/stage1.yaml
    sets: [tokenizer=runs/demo/tokenizer, data.shards=runs/demo/shards]   # every variant
    variants:
      lambda_0: [anchor.lambda_reg=0]
      lambda_1: [anchor.lambda_reg=1, "model.init=runs/base/{variant}/model"]

`plan_sweep` checks every variant as its trainer would (unknown keys, bad values, λ too large for
the learning rate) before any job starts, and writes `<out>/<variant>/config.yaml`, the whole
merged config with the run directory inside `<out>/<variant>/`, plus `<out>/variants.txt` (one
name per line: a slurm array index is a line number, `scripts/slurm/sweep.sbatch`),
`<out>/command` (the trainer's subcommand) and `<out>/sweep.json`. ``{variant}`` in a value is replaced by the variant's name, so a second sweep
(stage 2) can start each variant from the first sweep's model of the same name.

`collect_sweep` reads what each variant left: the last evaluation of its run log (the trainer's
`metrics.jsonl`: eval loss, scored report samples, held-out text perplexity, grounding) and, when
present, `radllm evaluate`'s `<out>/<variant>/eval/metrics.json` and `radllm perplexity`'s
`<out>/<variant>/eval/perplexity.json`; it writes `summary.json`,
`summary.md` (one row per variant) and `pareto.svg` (each variant's clinical F1 against its
held-out text perplexity, the anti-forgetting trade-off).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from radllm import atomic
from radllm.config import config_to_dict, load_config
from radllm.errors import RadllmError
from radllm.evaluation.curves import read_run
from radllm.evaluation.svg import line_chart

VARIANTS_FILENAME = "variants.txt"
COMMAND_FILENAME = "command"  # the radllm subcommand of every variant, for scripts/slurm/sweep.sbatch
SWEEP_FILENAME = "sweep.json"
EVAL_DIRNAME = "eval"
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: The name under which a variant's evaluation holds the reference's reports (`radllm evaluate
#: --pred recipe=...`): its `report/diff/recipe/...` keys are the variant minus the reference, paired.
PAIRED_REFERENCE = "recipe"
#: Columns of the summary: (source, key, header). "run" keys come from the run log's last
#: evaluation (flattened as report.html reads them), "eval" keys from `radllm evaluate`.
SUMMARY_COLUMNS = (
    ("eval", "report/ce_f1_micro_present_strict", "strict clinical F1"),
    ("eval", f"report/diff/{PAIRED_REFERENCE}/ce_f1_micro_present_strict", f"strict F1 − {PAIRED_REFERENCE} (paired)"),
    ("eval", "report/ce_f1_micro_present", "clinical F1"),
    ("eval", "report/contradiction_rate", "contradicts"),
    ("eval", "image/gen_clinical_f1_micro", "image F1 (requested findings)"),
    ("eval", "vqa/auroc_macro", "VQA macro AUROC"),
    ("run", "loss", "eval loss"),
    ("run", "samples/f1_micro_present", "samples F1"),
    ("perplexity", "perplexity", "text perplexity (whole split)"),
    ("run", "text_perplexity/perplexity", "text perplexity (eval studies)"),
    ("run", "grounding/report_generation/gain_nats", "grounding gain (nats)"),
)
#: The Pareto chart: y and x are the first of these keys the variants have.
PARETO_Y = ("eval/report/ce_f1_micro_present_strict", "run/samples/f1_micro_present")
PARETO_X = ("perplexity/perplexity", "run/text_perplexity/perplexity")


@dataclass(frozen=True)
class Trainer:
    """What a sweep needs of a trainer: its config schema, the key of its run directory, its export's name."""

    schema: type
    output_key: str
    export_name: str


def _trainers() -> dict[str, Trainer]:
    from radllm.training.config import TrainConfig
    from radllm.vq.train_config import VQTrainConfig

    return {"train": Trainer(TrainConfig, "run_dir", "model"), "vq-train": Trainer(VQTrainConfig, "output_dir", "vq")}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file."""

    command: str
    config: str
    sets: list[str]
    variants: dict[str, list[str]]


def read_sweep(path: str | os.PathLike) -> SweepSpec:
    """Parse and check a sweep file (keys, types, variant names).

    Raises:
        RadllmError: naming the file and what is wrong.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise RadllmError(f"sweep file {path}: cannot read ({err})") from err
    except yaml.YAMLError as err:
        raise RadllmError(f"sweep file {path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise RadllmError(f"sweep file {path}: expected a mapping with config and variants")
    unknown = set(data) - {"command", "config", "sets", "variants"}
    if unknown:
        raise RadllmError(f"sweep file {path}: unknown key(s) {sorted(unknown)}; expected command, config, sets, variants")
    command = data.get("command", "train")
    if command not in _trainers():
        raise RadllmError(f"sweep file {path}: command = {command!r}; expected one of {sorted(_trainers())}")
    if not isinstance(data.get("config"), str):
        raise RadllmError(f"sweep file {path}: config must be the path of a run config (YAML)")
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise RadllmError(f"sweep file {path}: variants must map at least one name to a list of KEY=VALUE")
    sets = _set_list(data.get("sets", []), f"sweep file {path}: sets")
    parsed = {}
    for name, variant_sets in variants.items():
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            raise RadllmError(f"sweep file {path}: variant name {name!r} must be letters, digits, '_', '.', '-' (it names a directory)")
        parsed[name] = _set_list(variant_sets or [], f"sweep file {path}: variant {name}")
    return SweepSpec(command, data["config"], sets, parsed)


def _set_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and "=" in item for item in value):
        raise RadllmError(f"{where}: expected a list of KEY=VALUE strings, got {value!r}")
    return list(value)


def variant_overrides(spec: SweepSpec, name: str, out_dir: Path, extra_sets: Sequence[str] = ()) -> list[str]:
    """The `--set` list of one variant: the sweep's sets, the caller's, the variant's, then its run and export directories."""
    trainer = _trainers()[spec.command]
    overrides = [item.replace("{variant}", name) for item in (*spec.sets, *extra_sets, *spec.variants[name])]
    return [*overrides, f"{trainer.output_key}={out_dir / name}", f"export_dir={out_dir / name / trainer.export_name}"]


def plan_sweep(sweep_file: str | os.PathLike, out_dir: str | os.PathLike, extra_sets: Sequence[str] = ()) -> list[str]:
    """Check every variant and write its merged config; return the variant names in order.

    `extra_sets` (the CLI's `--set`) apply to every variant after the sweep file's own sets and
    before the variant's: paths that differ between machines (data, tokenizer) stay out of the file.

    Re-planning the same sweep into the same directory rewrites nothing; a variant whose merged
    config would change while its config.yaml exists is refused (a requeued job of the old plan
    may still read it): plan into a new directory, or delete that variant's directory.

    Raises:
        RadllmError: a bad sweep file, or a variant its trainer would refuse (named with the key).
    """
    spec = read_sweep(sweep_file)
    trainer = _trainers()[spec.command]
    out = Path(out_dir)
    configs = {}
    for name in spec.variants:
        overrides = variant_overrides(spec, name, out, extra_sets)
        try:
            config = load_config(trainer.schema, spec.config, overrides)
            if hasattr(config, "validate"):
                config.validate()
        except RadllmError as err:
            raise RadllmError(f"sweep variant {name}: {err}") from err
        configs[name] = config
    texts = {name: yaml.safe_dump(config_to_dict(config), sort_keys=False) for name, config in configs.items()}
    for name, text in texts.items():
        path = out / name / "config.yaml"
        if path.is_file() and path.read_text() != text:
            raise RadllmError(f"sweep variant {name}: {path} exists with another config; plan into a new directory or remove {out / name}")
    for name, text in texts.items():
        if not (out / name / "config.yaml").is_file():
            atomic.write_text(out / name / "config.yaml", text)
    atomic.write_text(out / VARIANTS_FILENAME, "".join(f"{name}\n" for name in spec.variants))
    atomic.write_text(out / COMMAND_FILENAME, f"{spec.command}\n")
    record = {"command": spec.command, "config": spec.config, "sets": [*spec.sets, *extra_sets], "variants": spec.variants}
    atomic.write_json(out / SWEEP_FILENAME, record)
    return list(spec.variants)


def read_variants(sweep_dir: str | os.PathLike) -> list[str]:
    """Variant names of a planned sweep directory, in plan order."""
    path = Path(sweep_dir) / VARIANTS_FILENAME
    if not path.is_file():
        raise RadllmError(f"{sweep_dir}: no {VARIANTS_FILENAME}; plan the sweep first (radllm sweep plan SWEEP.yaml --out {sweep_dir})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def last_eval(run_dir: Path) -> dict[str, float]:
    """The last value of every numeric key the run logged at evaluations (flattened as ``a/b``)."""
    log = read_run(run_dir.name, run_dir)
    return {key: points[-1][1] for (kind, key), points in log.series.items() if kind == "eval"}


def _json_numbers(path: Path, prefix: str) -> dict[str, float]:
    """The numeric top-level values of a JSON object file, keys prefixed; {} when the file is absent."""
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RadllmError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise RadllmError(f"{path}: expected a JSON object of metrics")
    return {f"{prefix}/{key}": value for key, value in values.items() if isinstance(value, int | float) and not isinstance(value, bool)}


def variant_row(run_dir: Path, sets: Sequence[str]) -> dict[str, Any]:
    """What one run directory left: its run log's last evaluation (``run/``), ``eval/metrics.json``
    from `radllm evaluate` (``eval/``) and ``eval/perplexity.json`` from `radllm perplexity`
    (``perplexity/``), with a status: evaluated, trained or not run."""
    metrics: dict[str, float] = {}
    trained = (run_dir / "metrics.jsonl").is_file()
    if trained:
        metrics.update({f"run/{key}": value for key, value in last_eval(run_dir).items()})
    evaluated = (run_dir / EVAL_DIRNAME / "metrics.json").is_file()
    metrics.update(_json_numbers(run_dir / EVAL_DIRNAME / "metrics.json", "eval"))
    metrics.update(_json_numbers(run_dir / EVAL_DIRNAME / "perplexity.json", "perplexity"))
    status = "evaluated" if evaluated else "trained" if trained else "not run"
    return {"sets": list(sets), "status": status, "metrics": metrics}


def collect_sweep(
    sweep_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, references: Mapping[str, str | os.PathLike] | None = None
) -> dict[str, Any]:
    """Write summary.json, summary.md and pareto.svg for a planned sweep; return the summary.

    `references` ({name: directory laid out like a variant's: metrics.jsonl, eval/}) are rows to
    read the variants against, e.g. the recipe the sweep varies, trained elsewhere; they come
    first, marked ``"reference": true``. A variant without a run log yet is listed with
    ``"status": "not run"`` and empty cells, so a partly finished sweep can be read. The summary:
    {"order": [names, references first], "variants": {name: {"sets", "status", "reference",
    "metrics": {"run/<key>": value, "eval/<key>": value, "perplexity/<key>": value}}},
    "columns": [...]} (JSON objects are written with sorted keys: "order" keeps the row order).
    """
    sweep = Path(sweep_dir)
    names = read_variants(sweep)
    planned = json.loads((sweep / SWEEP_FILENAME).read_text()) if (sweep / SWEEP_FILENAME).is_file() else {"variants": {}}
    rows: dict[str, dict[str, Any]] = {}
    for name, directory in (references or {}).items():
        if name in names:
            raise RadllmError(f"reference {name!r} has the name of a variant of {sweep}; give it another")
        if not Path(directory).is_dir():
            raise RadllmError(f"reference {name}={directory}: no such directory")
        rows[name] = variant_row(Path(directory), []) | {"reference": True}
    for name in names:
        rows[name] = variant_row(sweep / name, planned["variants"].get(name, [])) | {"reference": False}
    columns = [{"key": f"{source}/{key}", "header": header} for source, key, header in SUMMARY_COLUMNS
               if any(f"{source}/{key}" in row["metrics"] for row in rows.values())]
    summary = {"sweep_dir": str(sweep), "columns": columns, "order": list(rows), "variants": rows}
    out = Path(out_dir) if out_dir is not None else sweep
    atomic.write_json(out / "summary.json", summary)
    atomic.write_text(out / "summary.md", summary_table(summary))
    atomic.write_text(out / "pareto.svg", pareto_chart(rows))
    return summary


def _cell(metrics: Mapping[str, Any], key: str) -> str:
    """A metric, with its bootstrap interval when the evaluation gives one (``<key>/ci_low``, ``/ci_high``)."""
    value = metrics.get(key)
    if value is None:
        return "–"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
    return f"{text} [{low:.3g}, {high:.3g}]" if low is not None and high is not None else text


def summary_table(summary: Mapping[str, Any]) -> str:
    """Markdown: one row per variant, its sets, status and the summary's columns."""
    columns = summary["columns"]
    lines = ["| variant | sets | status | " + " | ".join(c["header"] for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for name in summary["order"]:
        row = summary["variants"][name]
        sets = "(reference)" if row.get("reference") else ", ".join(f"`{s}`" for s in row["sets"]) or "(the config as is)"
        cells = [_cell(row["metrics"], c["key"]) for c in columns]
        lines.append(f"| {name} | {sets} | {row['status']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pareto_chart(rows: Mapping[str, Mapping[str, Any]], y_keys: Sequence[str] = PARETO_Y, x_keys: Sequence[str] = PARETO_X) -> str:
    """An SVG with one labelled point per variant: clinical F1 (y) against held-out text perplexity (x)."""

    def first_present(keys: Sequence[str]) -> str:
        return next((key for key in keys if any(key in row["metrics"] for row in rows.values())), keys[0])

    y_key, x_key = first_present(y_keys), first_present(x_keys)
    points = {name: [(row["metrics"][x_key], row["metrics"][y_key])] for name, row in rows.items()
              if x_key in row["metrics"] and y_key in row["metrics"]}
    return line_chart(points, title=f"{y_key} against {x_key} (up and left is better)", x_label="held-out text perplexity")
