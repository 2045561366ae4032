"""Report generation records: image codes -> training-identical prompt -> constrained decoding -> text.

Record (one JSONL line, the contract with `radllm evaluate`):
    {"task": "report", "study_id": str, "report": str, "views": [str], "decoding": {...}, "cfg_scale": float,
     "candidates": int, "chosen_candidate": int, "faults": int, "draft_nll": float | null}
`views` are the views shown to the model (frontal first, at most `max_views`); `cfg_scale` is the
report guidance scale (1 = none; the unconditional branch is `unconditional_report_prompt`).
With `candidates` N > 1 the kept report is the best of N drafts (`radllm.generation.report_drafts`):
`chosen_candidate` is its index (0 = the run's own decoding), `faults` its coherence faults and
`draft_nll` the model's mean NLL per token of it, eos included when it ended by one (null for
N = 1, where nothing is scored).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import torch
from transformers import PreTrainedTokenizerBase

from radllm.errors import RadllmError
from radllm.generation.beam import beam_search
from radllm.generation.constraints import report_token_mask
from radllm.generation.decode import decode_text
from radllm.generation.inputs import StudyInput
from radllm.generation.mode import GenerationMode, JobPlan
from radllm.generation.model import Generator
from radllm.generation.plan import BatchResult, Unit, study_units
from radllm.generation.report_drafts import choose_drafts
from radllm.generation.request import GenerateRequest
from radllm.generation.sampling import DecodingConfig, sample_generators
from radllm.generation.self_check import candidate_key
from radllm.generation.views import prompt_codes
from radllm.report_text import FINDINGS_TAG, IMPRESSION_TAG, as_written_order
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
    log_probs: list[list[float]] | None = None,
) -> list[list[int]]:
    """Text-only continuations of `prompts` (eos excluded) with the run's strategy, guided by
    `unconditional_prompts` at `cfg_scale` when given (greedy or sampled decoding only);
    `log_probs` as in `decode_text`."""
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
        stop_together=gen.stop_together, unconditional_prompts=unconditional_prompts, cfg_scale=cfg_scale, log_probs=log_probs,
    )


def second_section_start(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> int | None:
    """How many leading `ids` of a report hold its first section and the second section's tag
    (``IMPRESSION: … FINDINGS:`` or ``FINDINGS: … IMPRESSION:``); None without a second section."""
    text = decode_report(tokenizer, list(ids)).strip()
    second = FINDINGS_TAG if text.startswith(IMPRESSION_TAG) else IMPRESSION_TAG
    if second not in text[1:]:
        return None
    return next(k for k in range(1, len(ids) + 1) if second in decode_report(tokenizer, list(ids[:k]))[1:])


def draft_report_ids(
    gen: Generator,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[str],
    decoding: DecodingConfig,
    candidates: int,
    unconditional_prompts: Sequence[Sequence[int]] | None = None,
    cfg_scale: float = 1.0,
) -> tuple[list[list[list[int]]], torch.Tensor | None]:
    """`candidates` drafts of every prompt (draft-major) and, for N > 1, their NLL [N, B].

    Draft 0 is the run's own decoding. The others keep its first section (the impression of an
    impression-first model: the decided reading) and sample the second with the run's
    temperature / top-k / top-p, so they are different wordings of one reading, checked against
    it; a draft 0 without a second section is redrawn whole. All in one decoding batch. A
    draft's NLL is the mean over its ids (and eos, when it ended by one) of the model's own
    log-probabilities, taken from the decoding passes themselves.
    """
    if candidates == 1:
        return [generate_report_ids(gen, prompts, keys, decoding, unconditional_prompts, cfg_scale)], None
    first_log_probs: list[list[float]] = []
    first = generate_report_ids(gen, prompts, keys, decoding, unconditional_prompts, cfg_scale, first_log_probs)
    kept = [ids[: second_section_start(gen.tokenizer, ids) or 0] for ids in first]
    others, n = candidates - 1, len(prompts)
    continued = [[*prompt, *prefix] for prompt, prefix in zip(prompts, kept)] * others
    sampled = replace(decoding, strategy="sample", max_new_tokens=max(1, decoding.max_new_tokens - max(len(k) for k in kept)))
    tail_log_probs: list[list[float]] = []
    tails = generate_report_ids(
        gen, continued, [candidate_key(k, d) for d in range(1, candidates) for k in keys], sampled,
        None if unconditional_prompts is None else [[*u, *prefix] for u, prefix in zip(unconditional_prompts, kept)] * others, cfg_scale,
        tail_log_probs,
    )
    drafts = [first] + [[[*kept[i], *tails[d * n + i]] for i in range(n)] for d in range(others)]
    scored = [first_log_probs] + [[first_log_probs[i][: len(kept[i])] + tail_log_probs[d * n + i] for i in range(n)] for d in range(others)]
    nll = torch.tensor([[-sum(lp) / max(1, len(lp)) for lp in draft] for draft in scored], dtype=torch.float64)
    return drafts, nll


def process(
    gen: Generator, batch: Sequence[Unit], decoding: DecodingConfig, stage: int, template: int, max_views: int, cfg_scale: float = 1.0,
    candidates: int = 1,
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
    drafts, nll = draft_report_ids(gen, prompts, [s.study_id for s, _ in ready], decoding, candidates, unconditional, cfg_scale)
    texts = [[as_written_order(decode_report(gen.tokenizer, tokens)).strip() for tokens in draft] for draft in drafts]
    chosen = choose_drafts(texts, nll)
    described = decoding.describe()
    records = [
        {
            "task": TASK,
            "study_id": study.study_id,
            "report": texts[choice.index][index],
            "views": [study.views[v] for v in select_input_views(study.views, max_views)],
            "decoding": described,
            "cfg_scale": cfg_scale,
            "candidates": candidates,
            "chosen_candidate": choice.index,
            "faults": choice.faults,
            "draft_nll": choice.nll,
        }
        for index, ((study, _), choice) in enumerate(zip(ready, chosen))
    ]
    return BatchResult(records, errors)


def plan(request: GenerateRequest, gen: Generator, studies: list[StudyInput]) -> JobPlan:
    """One unit per study; records are resumed only under the same decoding and guidance."""
    r = request
    return JobPlan(
        units(studies), record_key,
        partial(process, gen, decoding=r.decoding, stage=r.stage, template=r.template, max_views=r.max_views, cfg_scale=r.cfg_scale,
                candidates=r.candidates),
        {"decoding": r.decoding.describe(), "cfg_scale": r.cfg_scale, "candidates": r.candidates},
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
    parser.add_argument("--candidates", type=int, default=1, metavar="N",
                        help="write N drafts per study (the run's decoding, then N-1 that keep its first section and sample the second "
                             "with --temperature/--top-k/--top-p) and keep the one with the fewest coherence faults, then the most "
                             "likely to the model "
                             "(radllm.generation.report_drafts; default 1 = plain decoding, N times the cost)")


def _check_options(request: GenerateRequest) -> None:
    if request.candidates > 1 and request.decoding.strategy == "beam":
        raise RadllmError("--candidates drafts by greedy or sampled decoding; with --strategy beam use --candidates 1")


MODE = GenerationMode(
    "reports", REPORT_GENERATION, help="write a report for every study's images (text tokens only)",
    input_help="manifest (.jsonl), shards directory (index.json) or folder of PNG/JPEG/DICOM images", out_help="output JSONL",
    plan=plan, add_options=add_options, decodes="greedy", guidance=True, beam=True, candidates=True, instructions=REPORT_INSTRUCTIONS,
    check_options=_check_options,
)
