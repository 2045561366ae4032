"""`radllm evaluate`: metrics of generated reports, images and VQA answers against references.

    radllm evaluate --pred runs/gen/reports.jsonl --ref data/phantoms/manifest.jsonl --out runs/eval
    radllm evaluate --pred images/index.jsonl --ref M --out runs/eval_img --classifier runs/demo/cxr_encoder
    radllm evaluate --pred runs/gen/reports.jsonl --pred baseline_normal=runs/baselines/baseline_normal.jsonl \
        --pred baseline_nearest=runs/baselines/baseline_nearest.jsonl --ref M --out runs/eval
    radllm evaluate --pred runs/gen/reports.jsonl --ref M --out runs/eval --scorer chexbert,radgraph,bertscore \
        --scorer-weights /models/scorers      # needs pip install 'radllm[scorers]'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from radllm.errors import RadllmError
from radllm.evaluation import EvaluationOptions, evaluate
from radllm.evaluation.bootstrap import RESAMPLES
from radllm.evaluation.clinical import UNCERTAIN_POLICIES
from radllm.evaluation.intervals import DIFF
from radllm.evaluation.keys import ABSENT_IMAGES, REFERENCE
from radllm.evaluation.reports import REPORT_LABEL_SOURCES
from radllm.evaluation.scorers import SCORERS, check_scorers, parse_scorers

NAME = "evaluate"
HELP = "score generated reports (NLG + clinical efficacy), images (PSNR/SSIM, FID, agreement) and VQA"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Writes OUT/metrics.json (flat keys report/..., image/..., vqa/..., eval/...; see README "
        "'Evaluation') and OUT/report.html (self-contained: headline table with bootstrap intervals, per-finding F1 "
        "chart, learning curves of --run-dir runs, sample studies side by side, then every metric)."
    )
    parser.add_argument("--pred", required=True, action="append", metavar="[NAME=]PATH",
                        help="prediction JSONL from `radllm generate` (report, image, vqa records); repeat it to score "
                             "several files in one run: a NAME= file's keys become <group>/NAME/<metric> "
                             "(e.g. report/baseline_normal/ce_f1_micro_14), unnamed files keep <group>/<metric>; "
                             "files sharing a name (or unnamed) are scored together and must hold different tasks")
    parser.add_argument("--perplexity", action="append", default=[], metavar="NAME=PATH",
                        help="JSON of `radllm perplexity`, copied into metrics.json as perplexity/NAME (repeatable)")
    parser.add_argument("--run-dir", action="append", default=[], metavar="[NAME=]DIR",
                        help="training run_dir whose metrics.jsonl report.html draws as learning curves (train/eval loss, "
                             "samples/f1_micro_present, grounding/*); repeatable, NAME defaults to the directory name")
    parser.add_argument("--ref", required=True, help="reference manifest.jsonl, or JSONL with study_id and report/text (+ labels)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--uncertain-policy", choices=UNCERTAIN_POLICIES, default="positive",
                        help="how uncertain (-1) labels count in clinical metrics (default positive)")
    parser.add_argument("--ce-labels", choices=REPORT_LABEL_SOURCES, default="labeler",
                        help="how reference reports are labelled for the clinical efficacy of generated reports: "
                             "labeler = the labeler that labels the generated reports (default), labels = the reference "
                             "file's labels (e.g. MIMIC's CheXpert CSV; mixes two labelers, with a warning)")
    parser.add_argument("--labeler", default=None, metavar="DIR",
                        help="a local HF sequence-classification model directory (e.g. a CheXbert converted to HF, see "
                             "radllm.labeler.model_labeler) that labels generated and reference reports instead of the rules")
    parser.add_argument("--scorer", default=None, metavar="NAMES",
                        help=f"comma list of the report scorers papers quote, from local weights: {', '.join(SCORERS)} "
                             "(report/chexbert_f1_*, report/radgraph_f1*, report/bertscore_f1*; radllm.evaluation.scorers; "
                             "needs pip install 'radllm[scorers]')")
    parser.add_argument("--scorer-weights", default=None, metavar="DIR",
                        help="directory with the scorers' weights (chexbert.pth, bert-base-uncased/, radgraph.tar.gz, "
                             "distilroberta-base/, ...); default: the Hugging Face cache. Nothing is downloaded: a missing "
                             "file is named with the command that fetches it")
    parser.add_argument("--classifier", default=None, help="CXR encoder (dir or xrv safetensors) for clinical agreement of images")
    parser.add_argument("--feature-extractor", default=None, help="CXR encoder for FID features (default: --classifier)")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    parser.add_argument("--samples", type=int, default=8, help="studies shown side by side in report.html (default 8)")
    parser.add_argument("--device", default="cpu", help="device for the CXR encoders and the --scorer models (default cpu)")
    parser.add_argument("--bootstrap", type=int, default=RESAMPLES, metavar="N",
                        help=f"paired-bootstrap resamples of studies for 95%% intervals of headline metrics and of the "
                             f"differences model - NAME (report/diff/NAME/...); 0 = off (default {RESAMPLES})")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resamples (default 0)")


def prediction_files(values: list[str]) -> dict[str, list[str]]:
    """``--pred`` values -> {name: [paths]}; "" names the unnamed files (a name may be repeated)."""
    files: dict[str, list[str]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or "/" in name:  # a plain path (that may contain "=")
            name, path = "", value
        files.setdefault(name, []).append(path)
    return files


def run_directories(values: list[str]) -> dict[str, str]:
    """``--run-dir`` values -> {name: directory}; an unnamed directory is named after itself.

    Raises:
        RadllmError: two run directories with the same name.
    """
    runs: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or "/" in name:  # a plain path
            name, path = Path(value).name, value
        if name in runs:
            raise RadllmError(f"--run-dir {value!r}: the name {name!r} is given twice; use NAME=DIR")
        runs[name] = path
    return runs


def run(args: argparse.Namespace) -> int:
    options = EvaluationOptions(
        uncertain_policy=args.uncertain_policy,
        report_labels=args.ce_labels,
        labeler=args.labeler,
        meteor=not args.no_meteor,
        classifier=args.classifier,
        feature_extractor=args.feature_extractor,
        samples=args.samples,
        device=args.device,
        bootstrap=args.bootstrap,
        bootstrap_seed=args.bootstrap_seed,
        scorers=parse_scorers(args.scorer) if args.scorer else (),
        scorer_weights=args.scorer_weights,
    )
    check_scorers(options.scorers, options.scorer_weights)  # a missing library or weight file fails before the slow work
    files = prediction_files(args.pred)
    perplexity = {}
    for value in args.perplexity:
        name, sep, path = value.partition("=")
        if not sep or name in perplexity:
            raise RadllmError(f"--perplexity {value!r}: expected NAME=PATH with a name not given before")
        perplexity[name] = path
    metrics = evaluate(files, args.ref, args.out, options, perplexity, run_directories(args.run_dir))
    names = (set(files) - {""}) | {REFERENCE, ABSENT_IMAGES}  # the sets evaluate adds itself are printed too
    for key, value in sorted(metrics.items()):
        parts = key.split("/")
        headline = len(parts) == 2 or (len(parts) == 3 and parts[1] in names) or (len(parts) == 4 and parts[1] == DIFF)
        if headline and isinstance(value, float):
            low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
            interval = f"  [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
            print(f"{key:48s} {value:.4f}{interval}")
    print(f"wrote {args.out}/metrics.json and {args.out}/report.html")
    return 0
