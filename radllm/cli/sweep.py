"""`radllm sweep plan|collect`: named `--set` variants of one run config, run as one job each, read as one table.

    radllm sweep plan sweeps/lambda.yaml --out runs/sweeps/lambda      # checks every variant, writes their configs
    sbatch --array=0-3 scripts/slurm/sweep.sbatch runs/sweeps/lambda   # or, on one machine, a loop (docs/training.md)
    radllm sweep collect runs/sweeps/lambda                            # summary.json, summary.md, pareto.svg
"""

from __future__ import annotations

import argparse

from radllm.errors import RadllmError
from radllm.evaluation.sweep import EVAL_DIRNAME, VARIANTS_FILENAME, collect_sweep, plan_sweep


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `sweep` with its `plan` and `collect` subcommands."""
    parser = subparsers.add_parser(
        "sweep", help="plan a sweep of --set variants of one run config, and collect its results into one table",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="sweep_action", metavar="ACTION", required=True)
    plan = actions.add_parser(
        "plan", help="check every variant and write OUT/<variant>/config.yaml",
        description="Read a sweep file (command, config, sets, variants; docs/training.md 'Sweeps'), load every "
        "variant's config as its trainer would (a bad key or value names the variant) and write "
        f"OUT/<variant>/config.yaml (run and export directories inside OUT/<variant>/), OUT/{VARIANTS_FILENAME} "
        "(one name per line: the slurm array index is the line number) and OUT/sweep.json.",
    )
    plan.add_argument("sweep_file", metavar="SWEEP_YAML", help="the sweep file")
    plan.add_argument("--out", required=True, metavar="DIR", help="sweep directory (one run directory per variant)")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="applied to every variant after the sweep file's sets, e.g. --set data.shards=/data/shards (repeatable)")
    plan.set_defaults(handler=_run_plan)
    collect = actions.add_parser(
        "collect", help="one table and a Pareto chart of a sweep's variants",
        description="Per variant: the last evaluation of its run log (eval loss, report-sample F1, held-out text "
        f"perplexity, grounding) and, where present, radllm evaluate's DIR/<variant>/{EVAL_DIRNAME}/metrics.json and "
        f"radllm perplexity's DIR/<variant>/{EVAL_DIRNAME}/perplexity.json. "
        "Writes summary.json, summary.md and pareto.svg (clinical F1 against held-out text perplexity).",
    )
    collect.add_argument("sweep_dir", metavar="DIR", help="a planned sweep directory")
    collect.add_argument("--out", metavar="DIR", help="where to write the summary (default: the sweep directory)")
    collect.add_argument("--reference", action="append", default=[], metavar="NAME=DIR",
                         help="a row to read the variants against, from a directory laid out like a variant's "
                         "(metrics.jsonl and/or eval/), e.g. the recipe itself (repeatable)")
    collect.set_defaults(handler=_run_collect)


def _run_plan(args: argparse.Namespace) -> int:
    names = plan_sweep(args.sweep_file, args.out, args.overrides)
    print(f"planned {len(names)} variant(s) in {args.out}: {', '.join(names)}")
    print(f"run them: sbatch --array=0-{len(names) - 1} scripts/slurm/sweep.sbatch {args.out}")
    return 0


def _run_collect(args: argparse.Namespace) -> int:
    references = {}
    for item in args.reference:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise RadllmError(f"--reference {item!r}: expected NAME=DIR")
        references[name] = directory
    summary = collect_sweep(args.sweep_dir, args.out, references)
    counts: dict[str, int] = {}
    for row in summary["variants"].values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    where = args.out or args.sweep_dir
    print(f"{len(summary['variants'])} variant(s) ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}) -> "
          f"{where}/summary.json, summary.md, pareto.svg")
    return 0
