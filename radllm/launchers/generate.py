"""Batch generation with several processes (one per GPU): each rank takes every WORLD_SIZE-th study.

    deepspeed --num_gpus 8 tools/generate.py reports --model MODEL --vq VQ --input M --out preds.jsonl
    deepspeed --num_gpus 8 --module radllm.launchers.generate ...   # the same from an installed radllm (no checkout)
    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/generate.py vqa --model MODEL --vq VQ --input SHARDS --out vqa.jsonl

Arguments are those of `radllm generate TASK`. Rank r generates the studies i ≡ r (mod world size)
into its own part file (`OUT.part-0000r-of-0000N`, appended atomically per batch, resumable);
once every rank has finished (one all-reduce that also tells the others whether it succeeded),
rank 0 merges the parts into OUT in input order, so the output equals a one-process run's.
`--device auto` uses cuda:LOCAL_RANK when CUDA is available.
"""

from __future__ import annotations

import argparse

from radllm.cli.generate import build_request, configure_task, describe
from radllm.generation import TASKS, prepare_job
from radllm.ranks import exit_code, process_group, run_then_agree


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # passed by the deepspeed launcher, before TASK
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in TASKS:
        sub = tasks.add_parser(task)
        configure_task(sub, task)
        sub.add_argument("--dist-timeout-hours", type=float, default=24.0, help="how long finished ranks wait for the slowest one (default 24)")
    return parser.parse_args()


def generate(args: argparse.Namespace) -> None:
    """This rank's share, then (rank 0, once every rank succeeded) the merge."""
    with process_group(default_port=29512, timeout_hours=args.dist_timeout_hours) as ranks:
        if ranks.cuda and args.device == "auto":
            args.device = ranks.device

        def share():  # inside the agreement: a rank that fails even to prepare must not strand the others
            job = prepare_job(build_request(args))
            return job, job.run(ranks.rank, ranks.world_size)

        job, summary = run_then_agree(share, ranks, kept="records written so far are kept")
        counts = job.merge() if ranks.rank == 0 else None
        print(describe(summary, counts, job.request.records_path))


def main() -> int:
    args = parse_args()
    return exit_code("generate", lambda: generate(args))


if __name__ == "__main__":
    raise SystemExit(main())
