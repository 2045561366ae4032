"""Generated-report samples at every evaluation: a few fixed held-out studies, decoded greedily by the training model.

A falling eval loss does not show whether the model writes a sensible report; the reports it
writes for the same held-out studies at each evaluation do. The studies are the first
`logging.sample_reports` of the eval split in index order (so the same in every evaluation, run
and world size), and the reports come from `radllm.generation.reports.process`, the code behind
`radllm generate reports` (training-identical prompt, text-only constraint, greedy), run on the
engine's module: a sample reads as the exported model would write it.

Under ZeRO-3 every forward gathers each layer's parameters collectively, so all ranks must run
the same forwards: each rank decodes the same prompts, and decoding stops only when every rank
says its rows have ended (`stop_together`, an all-reduced flag the trainer passes). Rank 0 then
writes `run_dir/samples/step_NNNNNNN.jsonl` (atomic) and a Markdown table to tensorboard.

The samples are also scored (`sample_scores`): the labeler reads the findings of each generated
and each reference report, and the clinical F1 of the pair is logged with the evaluation
(`eval/samples/f1_micro_present`, ...). That is the learning curve of what the model says about
the image, which the token-averaged eval loss hides under the template text every report shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from radllm import atomic
from radllm.clinical_efficacy import clinical_efficacy
from radllm.data.shards import ShardIndex
from radllm.generation import reports
from radllm.generation.inputs import StudyInput, iter_shard_inputs
from radllm.generation.model import Generator
from radllm.generation.sampling import DecodingConfig
from radllm.labeler import default_labeler
from radllm.labeler.coherence import coherence_metrics, read_coherence
from radllm.vocab_spec import VisualVocabSpec

SAMPLES_DIRNAME = "samples"


def sample_studies(shards: str, split: str, n: int, spec: VisualVocabSpec, index: ShardIndex | None = None) -> list[StudyInput]:
    """The first `n` (`logging.sample_reports`) studies with images of split `split` (`data.eval_split`), in index order.

    Reads only those studies (`index`: the shards' index, when the caller has read it).
    """
    studies = (s for s in iter_shard_inputs(shards, spec, split, index) if s.has_images)
    return list(islice(studies, n))


def sample_reports(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    studies: Sequence[StudyInput],
    *,
    stage: int,
    max_views: int,
    max_new_tokens: int,
    stop_together: Callable[[bool], bool] | None = None,
) -> list[dict[str, Any]]:
    """Greedy reports of `studies`, prompted as in training (`tasks.stage`, `tasks.max_views`, template 0).

    The caller puts `model` in eval mode. `max_new_tokens`: the report length cap
    (`logging.sample_max_new_tokens`). `stop_together`: the rank-agreed stopping rule, needed when
    `model` is partitioned (see `radllm.generation.decode.decode_text`).

    Returns:
        `radllm generate reports` records (study_id, report, views, decoding) with the study's
        reference report added as "reference", in study order.
    """
    generator = Generator(model=model, tokenizer=tokenizer, spec=spec, vq=None, stop_together=stop_together)
    decoding = DecodingConfig(strategy="greedy", max_new_tokens=max_new_tokens)
    result = reports.process(generator, reports.units(studies), decoding, stage, template=0, max_views=max_views)
    references = {s.study_id: s.report for s in studies}
    return [{**record, "reference": references[record["study_id"]]} for record in result.records]


SCORE_KEYS = ("ce_f1_micro_present", "ce_f1_macro_present", "ce_precision_micro_present", "ce_recall_micro_present")
COHERENCE_KEYS = ("contradiction_rate", "repeat_rate", "side_consistency")


def sample_scores(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Clinical efficacy of the samples: labeler on each generated report vs labeler on its reference,
    and their coherence (`radllm.labeler.coherence`, the rules `radllm evaluate` scores with).

    Uncertain findings count as positive, as in `radllm evaluate`'s default; "present" averages
    are over the observations some reference states. Returns the `SCORE_KEYS` with the `ce_`
    prefix dropped, `contradiction_rate`, `repeat_rate` and, when some sample gives a side for a
    finding in both sections, `side_consistency`: the learning curve of reports that read like one.
    """
    labeler = default_labeler()
    reports = [r["report"] for r in records]
    scores = clinical_efficacy([labeler.label(r) for r in reports], [labeler.label(r["reference"]) for r in records], "positive")
    coherence = coherence_metrics(reports, read_coherence(reports))
    out = {key.removeprefix("ce_"): scores[key] for key in SCORE_KEYS}
    out |= {key: coherence[key] for key in COHERENCE_KEYS if coherence.get(key) is not None}
    return out


def samples_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIRNAME / f"step_{step:07d}.jsonl"


def write_samples(run_dir: str | Path, step: int, records: Sequence[dict[str, Any]]) -> Path:
    """One JSON line per sample, written atomically (a resumed run that evaluates the same step replaces it)."""
    path = samples_path(run_dir, step)
    atomic.write_text(path, "".join(json.dumps({"step": step, **r}, sort_keys=True) + "\n" for r in records))
    return path


def samples_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table (study, reference, generated) for tensorboard's text tab."""
    lines = ["| study | reference report | generated report |", "|---|---|---|"]
    lines += [f"| {_cell(r['study_id'])} | {_cell(r['reference'])} | {_cell(r['report'])} |" for r in records]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """One table cell: whitespace runs (newlines too) become one space, pipes are escaped."""
    return " ".join(str(text).split()).replace("|", "\\|") or " "
