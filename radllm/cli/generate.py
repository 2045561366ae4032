"""`radllm generate {reports,images,vqa}`: offline batch generation with an exported model.

    radllm generate reports --model runs/demo/model --vq runs/demo/vq --input data/manifest.jsonl --out preds.jsonl
    radllm generate reports ... --cfg-scale 2     # guided by the empty-image branch (tasks.report_drop_prob)
    radllm generate images  --model runs/demo/model --vq runs/demo/vq --input reports.txt --out gen/ --cfg-scale 4
    radllm generate vqa     --model runs/demo/model --vq runs/demo/vq --input runs/demo/shards --split test --out vqa.jsonl

Several processes (one per GPU) split the input:

    deepspeed --num_gpus 8 --module radllm generate reports --model MODEL --vq VQ --input M --out preds.jsonl
    deepspeed --num_gpus 8 tools/generate.py reports ...       # the same from a checkout (shim)
    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/generate.py vqa --model MODEL --vq VQ --input SHARDS --out vqa.jsonl

Rank r generates the studies i ≡ r (mod world size) into its own part file
(`OUT.part-0000r-of-0000N`, appended atomically per batch, resumable); once every rank has finished
(one all-reduce that also tells the others whether it succeeded), rank 0 merges the parts into OUT
in input order, so the output equals a one-process run's. `--device auto` uses cuda:LOCAL_RANK.
A killed run resumes where it stopped when rerun with the same arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from radllm.cli import add_dist_timeout
from radllm.generation.sampling import STRATEGIES, DecodingConfig
from radllm.labels import OBSERVATIONS

if TYPE_CHECKING:
    from radllm.generation.mode import GenerationMode

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `generate` and one subcommand per generation mode (`radllm.generation.job.MODES`)."""
    from radllm.generation.job import MODES

    parser = subparsers.add_parser("generate", help="batch generation: reports, images or VQA answers", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for mode in MODES.values():
        sub = tasks.add_parser(mode.name, help=mode.help, description=mode.help)
        configure_task(sub, mode)
        add_dist_timeout(sub)
        sub.set_defaults(handler=run)


def configure_task(parser: argparse.ArgumentParser, mode: GenerationMode) -> None:
    """Arguments of one mode: those every mode shares, the decoding ones of a mode that decodes, then its own."""
    parser.add_argument("--model", required=True, type=Path, help="exported model directory (HF files + radllm.json)")
    parser.add_argument("--vq", type=Path, default=None, required=mode.needs_vq,
                        help="VQ-GAN directory the model's radllm.json was built for (needed to encode images / decode PNGs)")
    parser.add_argument("--input", required=True, type=Path, help=mode.input_help)
    parser.add_argument("--out", required=True, type=Path, help=mode.out_help)
    parser.add_argument("--split", default=None, help="manifest/shards: only this split (default: all)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0, ... (default auto)")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16")
    parser.add_argument("--stage", type=int, default=2, choices=(1, 2),
                        help="prompt format of the model: 1 plain pairs, 2 instructions (default 2)")
    parser.add_argument("--template", type=int, default=0, help="index of the instruction / question phrasing (default 0)")
    parser.add_argument("--seed", type=int, default=0,
                        help="sampling seed; each study draws from its own generator seeded by (seed, study id)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    if mode.reads_images:
        parser.add_argument("--max-views", type=int, default=2, help="images shown per study, frontal first (default 2)")
        parser.add_argument("--shuffle-images", type=int, default=None, metavar="SEED",
                            help="control: show each study the images of another study of the input (a derangement seeded by "
                                 "SEED); records say which in image_from. Scored against the own references = a model that ignores "
                                 "the image")
    if mode.decodes is not None:
        strategies = [s for s in STRATEGIES if mode.beam or s != "beam"]
        parser.add_argument("--strategy", choices=strategies, default=mode.decodes, help=f"decoding (default {mode.decodes})")
        parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
        parser.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens (default 0 = off)")
        parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1 = off)")
    if mode.add_options is not None:
        mode.add_options(parser)


def build_request(args: argparse.Namespace):
    """The library request behind parsed arguments."""
    from radllm.generation import GenerateRequest

    decoding = DecodingConfig(
        strategy=getattr(args, "strategy", "greedy"), temperature=getattr(args, "temperature", 1.0), top_k=getattr(args, "top_k", 0),
        top_p=getattr(args, "top_p", 1.0), seed=args.seed, max_new_tokens=getattr(args, "max_new_tokens", 256),
        min_new_tokens=getattr(args, "min_new_tokens", 0), num_beams=getattr(args, "num_beams", 4),
        length_penalty=getattr(args, "length_penalty", 1.0),
    )
    return GenerateRequest(
        task=args.task, model=args.model, input=args.input, out=args.out, vq=args.vq, split=args.split, batch_size=args.batch_size,
        device=args.device, dtype=args.dtype, stage=args.stage, template=args.template, max_views=getattr(args, "max_views", 2),
        decoding=decoding, cfg_scale=getattr(args, "cfg_scale", 1.0), image_condition=getattr(args, "condition", None),
        candidates=getattr(args, "candidates", 1), draft_unit=getattr(args, "draft_unit", "report"), observations=getattr(args, "observations", OBSERVATIONS),
        questions=getattr(args, "questions", None), shuffle_images=getattr(args, "shuffle_images", None), progress=not args.no_progress,
    )


def describe(summary, counts: dict[str, int] | None, out: Path) -> str:
    """One line for the terminal."""
    line = (f"rank {summary.rank}: {summary.written} written, {summary.already_done} already done, {summary.failed} left out "
            f"(unreadable input), {summary.samples_per_second:.2f} samples/s")
    if counts is not None:
        line += f"; {out}: {counts['written']} records ({counts['missing']} missing, {counts['dropped']} stale dropped)"
    return line


def run(args: argparse.Namespace) -> int:
    """This rank's share, then (rank 0, once every rank succeeded) the merge."""
    from radllm.generation import prepare_job
    from radllm.preemption import StopRequest
    from radllm.ranks import process_group, run_then_agree

    stop = StopRequest()  # SIGTERM / SIGINT / SIGUSR1 or the launcher's exit: finish the batch, then exit 75
    stop.install()
    with process_group(timeout_hours=args.dist_timeout_hours) as ranks:
        args.device = ranks.device_for(args.device)

        def share():  # inside the agreement: a rank that fails even to prepare must not strand the others
            job = prepare_job(build_request(args))
            return job, job.run(ranks.rank, ranks.world_size, stop)

        job, summary = run_then_agree(share, ranks, kept="records written so far are kept")
        counts = job.merge() if ranks.rank == 0 else None
        print(describe(summary, counts, job.records_path))
    return 0
