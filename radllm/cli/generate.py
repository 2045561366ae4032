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

from radllm.cli import add_dist_timeout
from radllm.generation.sampling import STRATEGIES, DecodingConfig
from radllm.labels import OBSERVATIONS
from radllm.tasks.image_generation import IMAGE_CONDITIONS

_INPUTS = {
    "reports": "manifest (.jsonl), shards directory (index.json) or folder of PNG/JPEG/DICOM images",
    "images": "manifest (.jsonl; report text of each study) or a text file with one report per line",
    "vqa": "manifest (.jsonl), shards directory (index.json) or folder of PNG/JPEG/DICOM images",
}
_HELP = {
    "reports": "write a report for every study's images (text tokens only)",
    "images": "draw a chest X-ray for every report (exactly HxW image tokens, classifier-free guidance)",
    "vqa": "answer yes/no/uncertain questions about every study, with p(yes) for AUROC",
}
_DEFAULT_STRATEGY = {"reports": "greedy", "images": "sample", "vqa": "greedy"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `generate` and its per-task subcommands."""
    parser = subparsers.add_parser("generate", help="batch generation: reports, images or VQA answers", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in ("reports", "images", "vqa"):
        sub = tasks.add_parser(task, help=_HELP[task], description=_HELP[task])
        configure_task(sub, task)
        add_dist_timeout(sub)
        sub.set_defaults(handler=run)


def configure_task(parser: argparse.ArgumentParser, task: str) -> None:
    """Arguments of one task."""
    parser.add_argument("--model", required=True, type=Path, help="exported model directory (HF files + radllm.json)")
    parser.add_argument("--vq", type=Path, default=None, required=task == "images",
                        help="VQ-GAN directory the model's radllm.json was built for (needed to encode images / decode PNGs)")
    parser.add_argument("--input", required=True, type=Path, help=_INPUTS[task])
    out_help = "output directory (images/*.png + images.jsonl)" if task == "images" else "output JSONL"
    parser.add_argument("--out", required=True, type=Path, help=out_help)
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
    if task != "images":
        parser.add_argument("--max-views", type=int, default=2, help="images shown per study, frontal first (default 2)")
        parser.add_argument("--shuffle-images", type=int, default=None, metavar="SEED",
                            help="control: show each study the images of another study of the input (a derangement seeded by "
                                 "SEED); records say which in image_from. Scored against the own references = a model that ignores "
                                 "the image")
    if task == "vqa":
        parser.add_argument("--observations", nargs="+", default=list(OBSERVATIONS), metavar="NAME",
                            help="CheXpert observations to ask about (default all 14)")
        parser.add_argument("--questions", type=Path, default=None,
                            help="JSONL of {study_id, observation, question} instead of the templates")
        return
    strategies = [s for s in STRATEGIES if task == "reports" or s != "beam"]
    parser.add_argument("--strategy", choices=strategies, default=_DEFAULT_STRATEGY[task],
                        help=f"decoding (default {_DEFAULT_STRATEGY[task]})")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens (default 0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1 = off)")
    if task == "images":
        parser.add_argument("--cfg-scale", type=float, default=4.0, help="classifier-free guidance scale (1 = no guidance; default 4)")
        parser.add_argument("--condition", choices=IMAGE_CONDITIONS, default=None,
                            help="what the prompt holds: the whole report or its impression alone (default: the model's "
                                 "tasks.image_condition, recorded in its config.json at export; report for other models)")
        parser.add_argument("--candidates", type=int, default=1, metavar="N",
                            help="draw N images per study and keep the one the model itself reads back as the condition text "
                                 "most likely (radllm.generation.self_check; default 1 = plain sampling, N times the cost)")
        return
    parser.add_argument("--cfg-scale", type=float, default=1.0,
                        help="report guidance: next-token scores moved away from the model's report for an empty image "
                             "(1 = no guidance; needs a model trained with tasks.report_drop_prob > 0)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest report in tokens (default 256)")
    parser.add_argument("--min-new-tokens", type=int, default=0, help="eos is forbidden before this many tokens (default 0)")
    parser.add_argument("--num-beams", type=int, default=4, help="beams for --strategy beam (default 4)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam score = log p / length**penalty (default 1)")


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
        candidates=getattr(args, "candidates", 1), observations=getattr(args, "observations", OBSERVATIONS),
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
        print(describe(summary, counts, job.request.records_path))
    return 0
