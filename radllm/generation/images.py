"""Image generation records: report -> training-identical prompt -> H×W codes (optionally guided) -> PNG.

Record (one line of `OUT_DIR/images.jsonl`, the contract with `radllm evaluate`):
    {"task": "image", "study_id": str, "prompt": str (report text), "image": "images/<key>.png",
     "codes_shape": [H, W], "codes": [H*W ints, raster order], "cfg_scale": float, "seed": int,
     "condition": "report" | "impression", "candidates": int, "chosen_candidate": int,
     "reading_nll": float | null}
`prompt` is the report as given; the model's prompt holds `image_condition_text(prompt, condition)`.
`image` is relative to the JSONL's folder. The PNG is written atomically before its record, so a
record never points at a missing or partial image.

Candidates (`radllm.generation.self_check`): with N > 1 every study is drawn N times and the
drawing the model itself reads back as the condition text most likely is kept; `reading_nll` is
that mean NLL per token (null for N = 1, where nothing is scored).

Guidance: with scale s != 1 the unconditional prompt of the same stage runs next to every
conditional one and codes are drawn from u + s·(c − u). At s = 1 the formula is exactly c, so the
unconditional branch is not run at all (half the compute, identical output).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from radllm.data.sample import study_key
from radllm.errors import RadllmError
from radllm.generation.decode import decode_image
from radllm.generation.inputs import StudyInput
from radllm.generation.mode import GenerationMode, JobPlan
from radllm.generation.model import Generator
from radllm.generation.plan import BatchResult, Unit, study_units
from radllm.generation.request import GenerateRequest
from radllm.generation.sampling import DecodingConfig, sample_generators
from radllm.generation.self_check import candidate_key, pick_best, reading_nll
from radllm.imaging import save_png
from radllm.tasks import IMAGE_GENERATION, image_condition_text, image_generation_prompt, unconditional_image_prompt
from radllm.tasks.image_generation import FULL_REPORT, IMAGE_CONDITION_KEY, IMAGE_CONDITIONS, IMAGE_INSTRUCTIONS

TASK = "image"
INDEX_NAME = "images.jsonl"
IMAGE_DIR = "images"

units = study_units


def record_key(record: dict) -> str:
    return str(record["study_id"])


def check_decoding(decoding: DecodingConfig) -> None:
    if decoding.strategy == "beam":
        raise RadllmError("image generation decodes with strategy 'sample' or 'greedy'; beam search is for reports")


def generate_codes(
    gen: Generator, reports: Sequence[str], keys: Sequence[str], decoding: DecodingConfig, cfg_scale: float, stage: int, template: int,
    condition: str,
) -> torch.Tensor:
    """Codes [B, H, W] for each report (one seeded generator per key); `condition` as in training."""
    spec = gen.spec
    prompts = [image_generation_prompt(image_condition_text(r, condition), gen.tokenizer, spec, stage, template) for r in reports]
    unconditional = None
    if cfg_scale != 1.0:
        unconditional = [unconditional_image_prompt(gen.tokenizer, spec, stage)] * len(prompts)
    generators = sample_generators(decoding.seed, keys, gen.device) if decoding.strategy == "sample" else None
    codes = decode_image(
        gen.model, prompts, boi_id=spec.boi_id, token_offset=spec.token_offset, codebook_size=spec.codebook_size,
        num_tokens=spec.tokens_per_image, pad_id=gen.pad_id, config=decoding, generators=generators,
        unconditional_prompts=unconditional, cfg_scale=cfg_scale,
    )
    return codes.view(len(prompts), spec.grid_height, spec.grid_width)


def process(
    gen: Generator, batch: Sequence[Unit], out_dir: Path, decoding: DecodingConfig, cfg_scale: float, stage: int, template: int, condition: str,
    candidates: int = 1,
) -> BatchResult:
    """Generate, decode and save one batch of images; studies with an empty report are left out."""
    vq = gen.require_vq()
    ready = [u.study for u in batch if u.study.report.strip()]
    errors = [f"study {u.study.study_id}: empty report, nothing to draw" for u in batch if not u.study.report.strip()]
    if not ready:
        return BatchResult([], errors)
    reports = [s.report for s in ready]
    # All candidates in one decoding batch (candidate-major): larger matmuls than N passes.
    keys = [candidate_key(s.study_id, c) for c in range(candidates) for s in ready]
    drawn = list(generate_codes(gen, reports * candidates, keys, decoding, cfg_scale, stage, template, condition).split(len(ready)))
    codes, chosen, nll = drawn[0], torch.zeros(len(ready), dtype=torch.long), None
    if candidates > 1:
        texts = [image_condition_text(r, condition) for r in reports]
        scores = reading_nll(gen, torch.cat(drawn), texts * candidates, stage).view(candidates, len(ready))  # [N, B]
        codes, chosen = pick_best(drawn, scores)
        nll = scores[chosen, torch.arange(len(ready))].tolist()
    with torch.inference_mode():
        pixels = vq.decode_codes(codes.to(gen.device)).cpu()  # [B, 1, S, S] in [0, 1]
    records = []
    for index, (study, grid, image) in enumerate(zip(ready, codes, pixels)):
        relative = f"{IMAGE_DIR}/{study_key(study.study_id)}.png"
        save_png(image, out_dir / relative)
        records.append(
            {
                "task": TASK, "study_id": study.study_id, "prompt": study.report, "image": relative,
                "codes_shape": list(grid.shape), "codes": grid.flatten().tolist(), "cfg_scale": cfg_scale, "seed": decoding.seed,
                "condition": condition, "candidates": candidates, "chosen_candidate": int(chosen[index]),
                "reading_nll": None if nll is None else nll[index],
            }
        )
    return BatchResult(records, errors)


def image_condition_of(model_config: Any) -> str:
    """The image condition a model was trained with: its config.json's `IMAGE_CONDITION_KEY`, or
    the whole report for models exported before the option (or by other tools).

    Raises:
        RadllmError: the recorded value is not a known condition.
    """
    condition = getattr(model_config, IMAGE_CONDITION_KEY, FULL_REPORT)
    if condition not in IMAGE_CONDITIONS:
        raise RadllmError(f"model config {IMAGE_CONDITION_KEY} = {condition!r}; expected one of {list(IMAGE_CONDITIONS)}")
    return condition


def plan(request: GenerateRequest, gen: Generator, studies: list[StudyInput]) -> JobPlan:
    """One unit per study, drawn with the request's condition (else the model's); resumed only under the same settings."""
    r = request
    condition = r.image_condition or image_condition_of(gen.model.config)
    return JobPlan(
        units(studies), record_key,
        partial(process, gen, out_dir=r.out, decoding=r.decoding, cfg_scale=r.cfg_scale, stage=r.stage, template=r.template,
                condition=condition, candidates=r.candidates),
        {"cfg_scale": r.cfg_scale, "seed": r.decoding.seed, "condition": condition, "candidates": r.candidates},
    )


def _check_options(request: GenerateRequest) -> None:
    check_decoding(request.decoding)


def records_path(out: Path) -> Path:
    """--out is a directory: the PNGs under `IMAGE_DIR`, the records in `INDEX_NAME`."""
    return out / INDEX_NAME


def add_options(parser: argparse.ArgumentParser) -> None:
    """`radllm generate images`' own options: guidance, the prompt's condition, self-checked candidates."""
    parser.add_argument("--cfg-scale", type=float, default=4.0, help="classifier-free guidance scale (1 = no guidance; default 4)")
    parser.add_argument("--condition", choices=IMAGE_CONDITIONS, default=None,
                        help="what the prompt holds: the whole report or its impression alone (default: the model's "
                             "tasks.image_condition, recorded in its config.json at export; report for other models)")
    parser.add_argument("--candidates", type=int, default=1, metavar="N",
                        help="draw N images per study and keep the one the model itself reads back as the condition text "
                             "most likely (radllm.generation.self_check; default 1 = plain sampling, N times the cost)")


MODE = GenerationMode(
    "images", IMAGE_GENERATION, help="draw a chest X-ray for every report (exactly HxW image tokens, classifier-free guidance)",
    input_help="manifest (.jsonl; report text of each study) or a text file with one report per line",
    out_help="output directory (images/*.png + images.jsonl)", plan=plan, add_options=add_options, decodes="sample", reads_images=False, needs_vq=True, guidance=True,
    candidates=True, instructions=IMAGE_INSTRUCTIONS, check_options=_check_options, records_path=records_path,
)
