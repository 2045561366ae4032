"""`radllm evaluate`: metrics of generated reports, images and VQA answers against references.

    radllm evaluate --pred runs/gen/reports.jsonl --ref data/phantoms/manifest.jsonl --out runs/eval
    radllm evaluate --pred images/index.jsonl --ref M --out runs/eval_img --classifier runs/demo/cxr_encoder
"""

from __future__ import annotations

import argparse

from radllm.evaluation import EvaluationOptions, evaluate
from radllm.evaluation.clinical import UNCERTAIN_POLICIES
from radllm.evaluation.reports import LABEL_SOURCES

NAME = "evaluate"
HELP = "score generated reports (NLG + clinical efficacy), images (PSNR/SSIM, FID, agreement) and VQA"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Writes OUT/metrics.json (flat keys report/..., image/..., vqa/..., eval/...; see README "
        "'Evaluation') and OUT/report.html (self-contained: metric tables and sample studies side by side)."
    )
    parser.add_argument("--pred", required=True, help="prediction JSONL from `radllm generate` (report, image, vqa records)")
    parser.add_argument("--ref", required=True, help="reference manifest.jsonl, or JSONL with study_id and report/text (+ labels)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--uncertain-policy", choices=UNCERTAIN_POLICIES, default="positive",
                        help="how uncertain (-1) labels count in clinical metrics (default positive)")
    parser.add_argument("--ce-labels", choices=LABEL_SOURCES, default="auto",
                        help="reference labels: the reference file's labels, the labeler on the reference "
                             "text, or auto = file labels when every study has them (default auto)")
    parser.add_argument("--classifier", default=None, help="CXR encoder (dir or xrv safetensors) for clinical agreement of images")
    parser.add_argument("--feature-extractor", default=None, help="CXR encoder for FID features (default: --classifier)")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    parser.add_argument("--samples", type=int, default=8, help="studies shown side by side in report.html (default 8)")
    parser.add_argument("--device", default="cpu", help="device for the CXR encoders (default cpu)")


def run(args: argparse.Namespace) -> int:
    options = EvaluationOptions(
        uncertain_policy=args.uncertain_policy,
        label_source=args.ce_labels,
        meteor=not args.no_meteor,
        classifier=args.classifier,
        feature_extractor=args.feature_extractor,
        samples=args.samples,
        device=args.device,
    )
    metrics = evaluate(args.pred, args.ref, args.out, options)
    shown = {k: v for k, v in metrics.items() if k.count("/") == 1 and isinstance(v, float)}
    for key in sorted(shown):
        print(f"{key:40s} {shown[key]:.4f}")
    print(f"wrote {args.out}/metrics.json and {args.out}/report.html")
    return 0
