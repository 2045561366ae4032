"""Report generation records: image codes -> training-identical prompt -> constrained decoding -> text.

Record (one JSONL line, the contract with `radllm evaluate`):
    {"task": "report", "study_id": str, "report": str, "views": [str], "decoding": {...}, "cfg_scale": float}
`views` are the views shown to the model (frontal first, at most `max_views`); `cfg_scale` is the
report guidance scale (1 = none; the unconditional branch is `unconditional_report_prompt`).
"""

from __future__ import annotations

from collections.abc import Sequence

from radllm.errors import RadllmError
from radllm.generation.beam import beam_search
from radllm.generation.constraints import report_token_mask
from radllm.generation.decode import decode_text
from radllm.generation.model import Generator
from radllm.generation.plan import BatchResult, Unit, study_units
from radllm.generation.sampling import DecodingConfig, sample_generators
from radllm.generation.views import prompt_codes
from radllm.report_text import as_written_order
from radllm.tasks import end_id, report_generation_prompt, select_input_views, unconditional_report_prompt
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
