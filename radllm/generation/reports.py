"""Report generation records: image codes -> training-identical prompt -> constrained decoding -> text.

Record (one JSONL line, the contract with `radllm evaluate`):
    {"task": "report", "study_id": str, "report": str, "views": [str], "decoding": {...}, "cfg_scale": float}
`views` are the views shown to the model (frontal first, at most `max_views`); `cfg_scale` is the
report guidance scale (1 = none; the unconditional branch is `unconditional_report_prompt`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

from radllm.errors import RadllmError
from radllm.generation.beam import beam_search
from radllm.generation.constraints import report_token_mask
from radllm.generation.decode import decode_text
from radllm.generation.inputs import StudyInput
from radllm.generation.mode import GenerationMode, JobPlan
from radllm.generation.model import Generator
from radllm.generation.plan import BatchResult, Unit, study_units
from radllm.generation.request import GenerateRequest
from radllm.generation.sampling import DecodingConfig, sample_generators
from radllm.generation.views import prompt_codes
from radllm.report_text import as_written_order
from radllm.tasks import REPORT_GENERATION, end_id, report_generation_prompt, select_input_views, unconditional_report_prompt
from radllm.tasks.report_generation import REPORT_INSTRUCTIONS
from radllm.vocab import decode_report

TASK = "report"


def record_key(record: dict) -> str:
    return str(record["study_id"])


units = study_units


def generate_report_ids(
    gen: Generator,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[str],
    decoding: DecodingConfig,
    unconditional_prompts: Sequence[Sequence[int]] | None = None,
    cfg_scale: float = 1.0,
) -> list[list[int]]:
    """Text-only continuations of `prompts` (eos excluded) with the run's strategy, guided by
    `unconditional_prompts` at `cfg_scale` when given (greedy or sampled decoding only)."""
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    eos = end_id(gen.tokenizer)
    if decoding.strategy == "beam":
        if gen.stop_together is not None:
            raise RadllmError("beam search has no rank-agreed stopping rule; use greedy or sampled decoding on a partitioned model")
        if unconditional_prompts is not None:
            raise RadllmError("report guidance (--cfg-scale) with beam search is not supported; use greedy or sampled decoding")
        return beam_search(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=decoding)
    generators = sample_generators(decoding.seed, keys, gen.device) if decoding.strategy == "sample" else None
    return decode_text(
        gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=decoding, generators=generators,
        stop_together=gen.stop_together, unconditional_prompts=unconditional_prompts, cfg_scale=cfg_scale,
    )


def process(
    gen: Generator, batch: Sequence[Unit], decoding: DecodingConfig, stage: int, template: int, max_views: int, cfg_scale: float = 1.0
) -> BatchResult:
    """Records of one batch; studies with an unreadable image are left out and reported."""
    studies = [u.study for u in batch]
    codes, errors = prompt_codes(studies, gen.vq, max_views)
    ready = [(s, c) for s, c in zip(studies, codes) if c is not None]
    if not ready:
        return BatchResult([], errors)
    prompts = [report_generation_prompt(c, gen.tokenizer, gen.spec, stage, template) for _, c in ready]
    unconditional = None
    if cfg_scale != 1.0:
        unconditional = [unconditional_report_prompt(gen.tokenizer, gen.spec, stage, template)] * len(prompts)
    ids = generate_report_ids(gen, prompts, [s.study_id for s, _ in ready], decoding, unconditional, cfg_scale)
    described = decoding.describe()
    records = [
        {
            "task": TASK,
            "study_id": study.study_id,
            "report": as_written_order(decode_report(gen.tokenizer, tokens)).strip(),
            "views": [study.views[v] for v in select_input_views(study.views, max_views)],
            "decoding": described,
            "cfg_scale": cfg_scale,
        }
        for (study, _), tokens in zip(ready, ids)
    ]
    return BatchResult(records, errors)


def plan(request: GenerateRequest, gen: Generator, studies: list[StudyInput]) -> JobPlan:
    """One unit per study; records are resumed only under the same decoding and guidance."""
    r = request
    return JobPlan(
        units(studies), record_key,
        partial(process, gen, decoding=r.decoding, stage=r.stage, template=r.template, max_views=r.max_views, cfg_scale=r.cfg_scale),
        {"decoding": r.decoding.describe(), "cfg_scale": r.cfg_scale},
    )


def add_options(parser: argparse.ArgumentParser) -> None:
    """`radllm generate reports`' own options: report guidance, lengths, beam search."""
    parser.add_argument("--cfg-scale", type=float, default=1.0,
                        help="report guidance: next-token scores moved away from the model's report for an empty image "
                             "(1 = no guidance; needs a model trained with tasks.report_drop_prob > 0)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest report in tokens (default 256)")
    parser.add_argument("--min-new-tokens", type=int, default=0, help="eos is forbidden before this many tokens (default 0)")
    parser.add_argument("--num-beams", type=int, default=4, help="beams for --strategy beam (default 4)")
    parser.add_argument("--length-penalty", type=float, default=1.0, help="beam score = log p / length**penalty (default 1)")


MODE = GenerationMode(
    "reports", REPORT_GENERATION, help="write a report for every study's images (text tokens only)",
    input_help="manifest (.jsonl), shards directory (index.json) or folder of PNG/JPEG/DICOM images", out_help="output JSONL",
    plan=plan, add_options=add_options, decodes="greedy", guidance=True, beam=True, instructions=REPORT_INSTRUCTIONS,
)
