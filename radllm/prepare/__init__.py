"""Preparation of real chest X-ray datasets into the study manifest (`radllm.manifest`).

Each preparer reads a dataset in its published layout and writes, into one output directory:

    manifest.jsonl          accepted studies (schema of `radllm.manifest`)
    rejects.jsonl           every study left out, with the reason and a detail
    prepare_summary.json    counts per split, per view and per reject reason, and the options used

Nothing is dropped silently: each input study ends up in exactly one of the two JSONL files.

    radllm prepare iu-xray --reports ecgen-radiology --images NLMCXR_png --out data/iu
    radllm prepare mimic-cxr --root mimic-cxr-jpg/2.0.0 --reports mimic-cxr/2.0.0 --out data/mimic
"""

from radllm.prepare.iu_xray import prepare_iu_xray
from radllm.prepare.mimic_cxr import prepare_mimic_cxr
from radllm.prepare.outcome import REJECT_REASONS, Preparation, Reject

__all__ = ["REJECT_REASONS", "Preparation", "Reject", "prepare_iu_xray", "prepare_mimic_cxr"]
