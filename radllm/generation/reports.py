"""Report generation records: image codes -> training-identical prompt -> constrained decoding -> text.

Record (one JSONL line, the contract with `radllm evaluate`):
    {"task": "report", "study_id": str, "report": str, "views": [str], "decoding": {...}, "cfg_scale": float,
     "candidates": int, "chosen_candidate": int, "faults": int, "draft_nll": float | null, "draft_unit": str}
`views` are the views shown to the model (frontal first, at most `max_views`); `cfg_scale` is the
report guidance scale (1 = none; the unconditional branch is `unconditional_report_prompt`).
With `candidates` N > 1 the kept report is the best of N drafts (`radllm.generation.report_drafts`):
`chosen_candidate` is its index (0 = the run's own decoding; with `draft_unit` "sentence", 1 is
the report built sentence by sentence), `faults` its coherence faults and `draft_nll` the model's
mean NLL per token of it, eos included when it ended by one (null for N = 1, where nothing is
scored).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache, partial

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
    stop_ids: Sequence[int] = (),
) -> list[list[int]]:
    """Text-only continuations of `prompts` (eos excluded) with the run's strategy, guided by
    `unconditional_prompts` at `cfg_scale` when given (greedy or sampled decoding only);
    `log_probs` and `stop_ids` as in `decode_text`."""
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
        stop_ids=stop_ids,
    )


def second_section_start(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> int | None:
    """How many leading `ids` of a report hold its first section and the second section's tag
    (``IMPRESSION: … FINDINGS:`` or ``FINDINGS: … IMPRESSION:``); None without a second section."""
    text = decode_report(tokenizer, list(ids)).strip()
    second = FINDINGS_TAG if text.startswith(IMPRESSION_TAG) else IMPRESSION_TAG
    if second not in text[1:]:
        return None
    return next(k for k in range(1, len(ids) + 1) if second in decode_report(tokenizer, list(ids[:k]))[1:])


DRAFT_UNITS = ("sentence", "report")  # --draft-unit


@lru_cache(maxsize=8)
def sentence_end_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Ids whose text ends with a sentence mark (. ! ?): where a sentence draft stops. Read once
    per tokenizer (a 128k vocabulary is 128k decodes), not once per batch."""
    return tuple(i for i in range(len(tokenizer)) if decode_report(tokenizer, [i]).rstrip().endswith((".", "!", "?")))


def _mean_nll(log_probs: Sequence[float]) -> float:
    return -sum(log_probs) / max(1, len(log_probs))


def _within(ids: list[int], log_probs: list[float], limit: int) -> tuple[list[int], list[float]]:
    """A continuation cut to `limit` ids, as if decoded alone with that budget (rows of one batch
    decode to the batch's largest budget; each row's own is what it would have had alone)."""
    return (ids[:limit], log_probs[:limit]) if len(ids) >= limit else (ids, log_probs)


def draft_by_sentences(
    gen: Generator,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[str],
    decoding: DecodingConfig,
    candidates: int,
    kept: Sequence[Sequence[int]],
    kept_log_probs: Sequence[Sequence[float]],
    unconditional_prompts: Sequence[Sequence[int]] | None = None,
    cfg_scale: float = 1.0,
) -> tuple[list[list[int]], list[list[float]]]:
    """One report per prompt, continued from `kept` one sentence at a time: `candidates` sampled
    sentences each time, the one whose report so far ranks first by `choose_drafts` (wrong
    statements, then unsupported impression findings, then the sentence's own mean NLL) kept,
    until the chosen candidate ends the report or the length runs out. A sentence has no
    minimum length (`min_new_tokens` bounds whole reports).

    A whole draft fails when any of its sentences does; choosing sentence by sentence lets each
    one be redrawn on its own. Candidate k of sentence s is drawn with key (study, s·N + k + 1).
    Returns the reports' ids and the log-probabilities of them (eos included when they end by it).
    """
    sampled = replace(decoding, strategy="sample")
    ends = sentence_end_ids(gen.tokenizer)
    is_end = set(ends)
    built, built_log_probs = [list(k) for k in kept], [list(lp) for lp in kept_log_probs]
    open_rows = [i for i in range(len(prompts)) if len(built[i]) < decoding.max_new_tokens]
    sentence = 0
    while open_rows:
        budget = decoding.max_new_tokens - min(len(built[i]) for i in open_rows)
        continued = [[*prompts[i], *built[i]] for i in open_rows] * candidates
        draw_keys = [candidate_key(keys[i], sentence * candidates + k + 1) for k in range(candidates) for i in open_rows]
        guided = None if unconditional_prompts is None else [[*unconditional_prompts[i], *built[i]] for i in open_rows] * candidates
        log_probs: list[list[float]] = []
        drawn = generate_report_ids(gen, continued, draw_keys, replace(sampled, max_new_tokens=budget, min_new_tokens=0), guided, cfg_scale, log_probs, ends)
        m = len(open_rows)
        for index in range(len(drawn)):
            drawn[index], log_probs[index] = _within(drawn[index], log_probs[index], decoding.max_new_tokens - len(built[open_rows[index % m]]))
        texts = [[as_written_order(decode_report(gen.tokenizer, built[i] + drawn[k * m + j])).strip() for j, i in enumerate(open_rows)]
                 for k in range(candidates)]
        nll = torch.tensor([[_mean_nll(log_probs[k * m + j]) for j in range(m)] for k in range(candidates)], dtype=torch.float64)
        still_open = []
        for j, (i, choice) in enumerate(zip(open_rows, choose_drafts(texts, nll))):
            ids, lp = drawn[choice.index * m + j], log_probs[choice.index * m + j]
            built[i] += ids
            built_log_probs[i] += lp
            ended_by_eos = len(lp) > len(ids)
            stopped = bool(ids) and ids[-1] in is_end
            if not ended_by_eos and stopped and len(built[i]) < decoding.max_new_tokens:
                still_open.append(i)
        open_rows = still_open
        sentence += 1
    return built, built_log_probs


def draft_report_ids(
    gen: Generator,
    prompts: Sequence[Sequence[int]],
    keys: Sequence[str],
    decoding: DecodingConfig,
    candidates: int,
    unconditional_prompts: Sequence[Sequence[int]] | None = None,
    cfg_scale: float = 1.0,
    unit: str = "report",
) -> tuple[list[list[list[int]]], torch.Tensor | None]:
    """Drafts of every prompt (draft-major) and, for N > 1, their NLL [drafts, B].

    Draft 0 is the run's own decoding. The others keep its first section (the impression of an
    impression-first model: the decided reading) and write the second by sampling with the run's
    temperature / top-k / top-p, so they are different wordings of one reading, checked against
    it; a draft 0 without a second section is redrawn whole. With `unit` "report" that is N − 1
    whole second sections in one decoding batch; with "sentence" one second section chosen
    sentence by sentence among N candidates each (`draft_by_sentences`). A draft's NLL is the
    mean over its ids (and eos, when it ended by one) of the model's own log-probabilities,
    taken from the decoding passes themselves.
    """
    if candidates == 1:
        return [generate_report_ids(gen, prompts, keys, decoding, unconditional_prompts, cfg_scale)], None
    first_log_probs: list[list[float]] = []
    first = generate_report_ids(gen, prompts, keys, decoding, unconditional_prompts, cfg_scale, first_log_probs)
    kept = [ids[: second_section_start(gen.tokenizer, ids) or 0] for ids in first]
    n = len(prompts)
    if unit == "sentence":
        built, built_log_probs = draft_by_sentences(gen, prompts, keys, decoding, candidates, kept,
                                                    [lp[: len(k)] for lp, k in zip(first_log_probs, kept)], unconditional_prompts, cfg_scale)
        drafts, scored = [first, built], [first_log_probs, built_log_probs]
    else:
        others = candidates - 1
        continued = [[*prompt, *prefix] for prompt, prefix in zip(prompts, kept)] * others
        sampled = replace(decoding, strategy="sample", max_new_tokens=max(1, decoding.max_new_tokens - min(len(k) for k in kept)))
        tail_log_probs: list[list[float]] = []
        tails = generate_report_ids(
            gen, continued, [candidate_key(k, d) for d in range(1, candidates) for k in keys], sampled,
            None if unconditional_prompts is None else [[*u, *prefix] for u, prefix in zip(unconditional_prompts, kept)] * others, cfg_scale,
            tail_log_probs,
        )
        for index in range(len(tails)):
            tails[index], tail_log_probs[index] = _within(tails[index], tail_log_probs[index], decoding.max_new_tokens - len(kept[index % n]))
        drafts = [first] + [[[*kept[i], *tails[d * n + i]] for i in range(n)] for d in range(others)]
        scored = [first_log_probs] + [[first_log_probs[i][: len(kept[i])] + tail_log_probs[d * n + i] for i in range(n)] for d in range(others)]
    nll = torch.tensor([[_mean_nll(lp) for lp in draft] for draft in scored], dtype=torch.float64)
    return drafts, nll


def process(
    gen: Generator, batch: Sequence[Unit], decoding: DecodingConfig, stage: int, template: int, max_views: int, cfg_scale: float = 1.0,
    candidates: int = 1, draft_unit: str = "report",
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
    drafts, nll = draft_report_ids(gen, prompts, [s.study_id for s, _ in ready], decoding, candidates, unconditional, cfg_scale, draft_unit)
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
            "draft_unit": draft_unit,
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
                candidates=r.candidates, draft_unit=r.draft_unit),
        {"decoding": r.decoding.describe(), "cfg_scale": r.cfg_scale, "candidates": r.candidates, "draft_unit": r.draft_unit},
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
    parser.add_argument("--draft-unit", choices=DRAFT_UNITS, default="report",
                        help="with --candidates N: draw N whole second sections (report, default), or build one sentence by "
                             "sentence, each chosen among N (sentence)")


def _check_options(request: GenerateRequest) -> None:
    if request.candidates > 1 and request.decoding.strategy == "beam":
        raise RadllmError("--candidates drafts by greedy or sampled decoding; with --strategy beam use --candidates 1")
    if request.draft_unit not in DRAFT_UNITS:
        raise RadllmError(f"--draft-unit {request.draft_unit!r}; expected one of {DRAFT_UNITS}")


MODE = GenerationMode(
    "reports", REPORT_GENERATION, help="write a report for every study's images (text tokens only)",
    input_help="manifest (.jsonl), shards directory (index.json) or folder of PNG/JPEG/DICOM images", out_help="output JSONL",
    plan=plan, add_options=add_options, decodes="greedy", guidance=True, beam=True, candidates=True, instructions=REPORT_INSTRUCTIONS,
    check_options=_check_options,
)
