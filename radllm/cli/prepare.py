"""`radllm prepare {iu-xray,mimic-cxr}`: turn a downloaded dataset into a study manifest.

    radllm prepare iu-xray --reports ecgen-radiology --images NLMCXR_png --out data/iu
    radllm prepare mimic-cxr --root mimic-cxr-jpg/2.0.0 --reports mimic-cxr/2.0.0 --out data/mimic
"""

from __future__ import annotations

import argparse

from radllm.prepare import Preparation, prepare_iu_xray, prepare_mimic_cxr
from radllm.prepare.iu_xray import VIEW_POLICIES as IU_VIEWS
from radllm.prepare.mimic_cxr import VIEW_POLICIES as MIMIC_VIEWS
from radllm.prepare.outcome import MANIFEST_NAME, REJECT_REASONS, REJECTS_NAME, SUMMARY_NAME

_OUTPUTS = (
    f"Writes OUT/{MANIFEST_NAME} (accepted studies), OUT/{REJECTS_NAME} (every study left out, "
    f"with its reason) and OUT/{SUMMARY_NAME} (counts per split, view and reject reason). "
    f"Reject reasons: {', '.join(REJECT_REASONS)}."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `prepare` and its per-dataset subcommands."""
    parser = subparsers.add_parser(
        "prepare", help="prepare IU X-Ray or MIMIC-CXR into a study manifest", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    datasets = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    iu = datasets.add_parser(
        "iu-xray",
        help="Open-i IU X-Ray: ecgen-radiology XML reports + NLMCXR_png images",
        description="Prepare the Open-i IU X-Ray release. Split: seeded study-level 7:1:2, or the split of an "
        "R2Gen-style annotation.json. Views: from --projections when given, else inferred from mirror "
        "symmetry (the most symmetric image of a study is frontal). " + _OUTPUTS,
    )
    iu.add_argument("--reports", required=True, metavar="XML_DIR", help="the ecgen-radiology directory of XML reports")
    iu.add_argument(
        "--images", required=True, metavar="PNG_DIR", help="the NLMCXR_png directory (<parentImage id>.png)"
    )
    iu.add_argument("--out", required=True, metavar="DIR", help="output directory")
    iu.add_argument("--annotation", metavar="JSON", help="R2Gen-style annotation.json whose split to use")
    iu.add_argument(
        "--projections", metavar="CSV", help="per-image view table with columns uid,filename,projection "
        "(indiana_projections.csv); replaces the symmetry heuristic",
    )
    iu.add_argument("--seed", type=int, default=0, help="seed of the 7:1:2 split (default 0)")
    iu.add_argument(
        "--views", choices=IU_VIEWS, default="frontal", help="frontal images only, or all images frontal first"
    )
    iu.set_defaults(handler=_run_iu_xray)

    mimic = datasets.add_parser(
        "mimic-cxr",
        help="MIMIC-CXR-JPG images and tables + MIMIC-CXR free-text reports",
        description="Prepare MIMIC-CXR-JPG with the official split, CheXpert labels when the table is present, "
        "and FINDINGS/IMPRESSION sections extracted from the free-text reports. " + _OUTPUTS,
    )
    mimic.add_argument(
        "--root", required=True, metavar="MIMIC_CXR_JPG_ROOT", help="holds the mimic-cxr-2.0.0-*.csv(.gz) tables and files/"
    )
    mimic.add_argument(
        "--reports", metavar="MIMIC_CXR_REPORTS_ROOT", help="holds files/pXX/pNNNNNNNN/sNNNNNNNN.txt (default: --root)"
    )
    mimic.add_argument("--out", required=True, metavar="DIR", help="output directory")
    mimic.add_argument(
        "--views", choices=MIMIC_VIEWS, default="frontal", help="PA/AP only, or PA/AP plus LATERAL/LL (frontal first)"
    )
    mimic.set_defaults(handler=_run_mimic_cxr)


def _report(result: Preparation, out: str) -> int:
    summary = result.summary()
    splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items())
    reasons = ", ".join(f"{name} {count}" for name, count in summary["reject_reasons"].items()) or "none"
    print(f"{summary['studies']} studies ({splits}) written to {out}/{MANIFEST_NAME}")
    print(f"{summary['rejected']} rejected ({reasons}); see {out}/{REJECTS_NAME}")
    return 0


def _run_iu_xray(args: argparse.Namespace) -> int:
    result = prepare_iu_xray(
        args.reports, args.images, args.out, annotation=args.annotation, projections=args.projections,
        seed=args.seed, views=args.views,
    )
    return _report(result, args.out)


def _run_mimic_cxr(args: argparse.Namespace) -> int:
    result = prepare_mimic_cxr(args.root, args.out, reports_root=args.reports, views=args.views)
    return _report(result, args.out)
