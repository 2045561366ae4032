"""`radllm baselines`: predictions that bound what a model's scores mean (normal, nearest, probe, prior).

    radllm baselines --shards runs/demo/shards --out runs/demo/baselines --manifest runs/demo/phantoms/manifest.jsonl
    radllm evaluate --pred GEN.jsonl --ref M --out runs/demo/eval \\
        --pred baseline_normal=runs/demo/baselines/baseline_normal.jsonl \\
        --pred baseline_normal=runs/demo/baselines/baseline_normal_images.jsonl \\
        --pred baseline_nearest=runs/demo/baselines/baseline_nearest.jsonl \\
        --pred baseline_probe=runs/demo/baselines/baseline_probe.jsonl \\
        --pred baseline_prior=runs/demo/baselines/baseline_prior.jsonl
"""

from __future__ import annotations

import argparse

from radllm.evaluation.baselines import NORMAL_REPORT, SIMILARITY, write_baselines

NAME = "baselines"
HELP = "write baselines (always normal; nearest training study; code-probe classifier; VQA label prior) as prediction JSONL"

EPILOG = f"""\
Writes into OUT, each file scored with `radllm evaluate --pred NAME=FILE` (NAME = the file's stem
unless said otherwise):
  baseline_normal.jsonl         report: the same normal report for every study (default below)
  baseline_nearest.jsonl        report: the report of the --reference-split study with the most
                                similar image codes ({SIMILARITY})
  baseline_probe.jsonl          report: the tokenizer's code probe (first frontal view's codes),
                                fit on --reference-split, thresholds chosen on --threshold-split,
                                its findings in a fixed template report (no sides, no severities)
  baseline_prior.jsonl          vqa: per observation the --reference-split's rates of yes/no/
                                uncertain among labelled studies, no image; the questions of
                                `radllm generate vqa` (template 0); never-labelled: "no", p_yes 0
  baseline_normal_images.jsonl  image (only with --manifest): the frontal image of the manifest's
  + baseline_normal_image.EXT   first --reference-split study with No Finding = 1 and no Support
                                Devices, for every study; score it under the name baseline_normal
                                beside baseline_normal.jsonl
  baselines.json                how each was made: texts, similarity, probe thresholds and AUROC
                                on the threshold split, train answer rates, the normal image's study
The probe and prior files are skipped (baselines.json says why) when the reference split has no labels.
Predicting for --threshold-split itself (e.g. --split val) tunes the probe's thresholds on the scored
studies: allowed, logged and recorded (thresholds_on_scored_studies).
Default normal report: {NORMAL_REPORT!r}"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--shards", required=True, help="tokenized shards directory (radllm tokenize) with index.json")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--split", default="test", help="studies to predict for (default test)")
    parser.add_argument("--reference-split", default="train",
                        help="studies whose reports are retrieved, the probe is fit on and answer rates are counted on (default train)")
    parser.add_argument("--reference-shards", default=None,
                        help="shards holding --reference-split and --threshold-split (default: --shards), e.g. the training "
                             "shards when --shards is a test-only set; must have the same visual vocabulary")
    parser.add_argument("--threshold-split", default="val", help="split the probe's decision thresholds are chosen on (default val)")
    parser.add_argument("--manifest", default=None,
                        help="reference manifest with image paths: also write the always-normal image baseline")
    parser.add_argument("--normal-text", default=NORMAL_REPORT, help="report text of the always-normal baseline")


def run(args: argparse.Namespace) -> int:
    paths = write_baselines(
        args.shards, args.out, args.split, args.reference_split, args.normal_text,
        reference_shards=args.reference_shards, threshold_split=args.threshold_split, manifest=args.manifest,
    )
    for name, path in paths.items():
        print(f"{name:24s} {path}")
    return 0
