"""Is the model reading the image? Held-out NLL with each study's own image vs another study's.

A falling loss does not say that a model looks at its image: most report tokens are template
text that the previous words predict, and a model that writes the most likely normal report
whatever it is shown scores close to one that reads. What only a reading model has is a lower NLL
on a study's targets when shown *its own* image than when shown someone else's. For every
image-conditioned task of the run's mix (weight > 0):

    report_generation, vqa   image → text: the study's image vs the image of another study
    image_generation         report → image: the study's report vs the report of another study

each study's example is built twice from the same `TokenizedStudy` with only the images (or the
report) replaced by those of its donor, study `derangement(n, seed)[i]` ≠ i, a fixed seeded
permutation without fixed points. Everything else stays: the study key, hence the seeded draws of
the task (stage-2 instruction, VQA question), and the targets, which are checked to be identical,
so the NLL difference is the image's (the report's) alone. Image generation is scored without
its classifier-free-guidance condition drop (an example without a report cannot tell reports
apart) and report generation without word dropout (training-time noise, not the model's reading).

Per task (`GroundingStats`, nats; "per study" = summed over the study's targets of that task, i.e.
per report, per answer, per image): the mean per-study NLL with the own and the shuffled input,
the same per target token, `gain_nats` = mean(shuffled − own) per study and `frac_better`, the
fraction of studies whose own input gives the lower NLL (differences within `TIE_NATS` count one
half, so a model that ignores the image scores exactly 0.5, as a coin would).

`measure_grounding` works on any callable causal LM (the trainer's engine, an exported model) and
splits the rows over ranks (`radllm.modeling.packed_nll`); the trainer logs its result at every
evaluation as `grounding/<task>/...` (README "Is my model reading the image?").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import islice
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.data.shards import ShardIndex
from radllm.data.split import iter_split
from radllm.errors import RadllmError
from radllm.generation.shuffle import derangement
from radllm.modeling.packed_nll import PackedScoring, per_example_nll
from radllm.tasks import IGNORE_INDEX, TaskExample, TaskMixConfig, study_rng, task_spec, task_specs
from radllm.vocab_spec import VisualVocabSpec

log = logging.getLogger(__name__)

#: Per-study NLL differences at most this large (nats) are ties: numerical noise, not reading.
TIE_NATS = 1e-4


@dataclass(frozen=True)
class GroundingStats:
    """The own-vs-shuffled comparison of one task (nats; see the module docstring)."""

    n_studies: int
    n_targets: int  # target tokens of those studies (the same for own and shuffled)
    nll_own: float  # mean per-study NLL with the study's own image (report)
    nll_shuffled: float  # mean per-study NLL with the donor's image (report)
    nll_own_per_token: float
    nll_shuffled_per_token: float
    gain_nats: float  # mean per-study (shuffled − own); > 0 when the model reads the image
    frac_better: float  # fraction of studies with own < shuffled (ties count 1/2); 0.5 = chance

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProbeExample:
    """One example of the diagnostic: study `study` of `task`, shown its own or its donor's input."""

    example: TaskExample
    task: str
    study: int  # index into the studies
    shuffled: bool


def has_images_and_report(study: TokenizedStudy) -> bool:
    """Whether both directions of the diagnostic apply to the study (and it can be a donor for both)."""
    return bool(study.image_codes) and len(study.report_ids) > 0


def grounding_studies(shards: str, split: str, spec: VisualVocabSpec, n: int, index: ShardIndex | None = None) -> list[TokenizedStudy]:
    """The first `n` studies of `split` in index order with images and a report: the same on every rank and run."""
    return list(islice((s for s in iter_split(shards, split, spec, index) if has_images_and_report(s)), n))


def grounded_tasks(tasks: TaskMixConfig) -> list[str]:
    """The tasks the run trains (weight > 0) whose input can be swapped for a donor's
    (`TaskSpec.donor_input`: their targets the image, or the report, should decide), in draw order."""
    return [spec.name for spec in task_specs() if spec.donor_input is not None and tasks.weights.get(spec.name, 0.0) > 0]


def scoring_config(tasks: TaskMixConfig) -> TaskMixConfig:
    """The run's task options without training-time noise: no CFG condition drop, no word dropout."""
    return replace(tasks, cfg_drop_prob=0.0, report_drop_prob=0.0, word_dropout=0.0)


def _targets(examples: Sequence[TaskExample]) -> list[list[int]]:
    return [[label for label in e.labels if label != IGNORE_INDEX] for e in examples]


def probe_examples(
    studies: Sequence[TokenizedStudy],
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    tasks: TaskMixConfig,
    seed: int,
) -> list[ProbeExample]:
    """Own and shuffled examples of every study for every task of `grounded_tasks(tasks)`.

    Both variants of a study draw from `study_rng(seed, 0, study.key)`, so they get the same
    instruction and question. A study the task has nothing to ask about (e.g. VQA without a
    labelled finding) is left out of that task; one that fails a task's checks (`RadllmError`)
    too, with a warning.

    Raises:
        RadllmError: fewer than 2 studies, or a task whose shuffled example has other targets
            than the own one (the comparison would not isolate the image).
    """
    if len(studies) < 2:
        raise RadllmError(f"the grounding diagnostic needs at least 2 studies with images and a report, got {len(studies)}")
    donors = derangement(len(studies), seed)
    config = scoring_config(tasks)
    out: list[ProbeExample] = []
    for name in grounded_tasks(tasks):
        task = task_spec(name)
        for index, study in enumerate(studies):
            shown = task.donor_input(study, studies[int(donors[index])])
            try:
                own = task.build(study, tokenizer, spec, study_rng(seed, 0, study.key), config)
                shuffled = task.build(shown, tokenizer, spec, study_rng(seed, 0, study.key), config)
            except RadllmError as err:
                log.warning("grounding: %s of study %s skipped: %s", name, study.key, err)
                continue
            if not own:
                continue
            if _targets(own) != _targets(shuffled):
                raise RadllmError(
                    f"grounding: {name} of study {study.key} has other targets with the donor's input; the task must not read them from it"
                )
            out += [ProbeExample(e, name, index, False) for e in own] + [ProbeExample(e, name, index, True) for e in shuffled]
    return out


def grounding_stats(own: torch.Tensor, shuffled: torch.Tensor, n_targets: int) -> GroundingStats:
    """Statistics of per-study NLLs (float [n]) with the own and the shuffled input."""
    if own.shape != shuffled.shape or own.numel() == 0:
        raise ValueError(f"own {tuple(own.shape)} and shuffled {tuple(shuffled.shape)} NLLs must be non-empty and alike")
    own, shuffled = own.double(), shuffled.double()
    gain = shuffled - own
    better = float((gain > TIE_NATS).sum()) + 0.5 * float((gain.abs() <= TIE_NATS).sum())
    return GroundingStats(
        n_studies=own.numel(),
        n_targets=n_targets,
        nll_own=float(own.mean()),
        nll_shuffled=float(shuffled.mean()),
        nll_own_per_token=float(own.sum()) / max(n_targets, 1),
        nll_shuffled_per_token=float(shuffled.sum()) / max(n_targets, 1),
        gain_nats=float(gain.mean()),
        frac_better=better / own.numel(),
    )


def measure_grounding(
    model: Callable[..., Any],
    studies: Sequence[TokenizedStudy],
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    tasks: TaskMixConfig,
    seed: int,
    scoring: PackedScoring,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, GroundingStats]:
    """Own-vs-shuffled NLL statistics per image-conditioned task of `tasks` (see the module docstring).

    Args:
        model: a causal LM callable on packed batches (`radllm.modeling.packed_nll`), in eval mode.
        studies: at least 2 studies with images and reports (`grounding_studies`), the same on
            every rank.
        seed: of the donor derangement and the task draws.
        scoring: row layout and this rank's share; with several ranks, `all_reduce` sums a
            float64 tensor over them (every rank must call this function).

    Returns:
        task → statistics, for the tasks that have at least one study; the same on every rank.
    """
    probes = probe_examples(studies, tokenizer, spec, tasks, seed)
    sums, counts = per_example_nll(model, [p.example for p in probes], tokenizer.pad_token_id, scoring)
    if all_reduce is not None and probes:  # the same probes on every rank: all reduce, or none does
        reduced = all_reduce(torch.cat([sums, counts])).to("cpu", torch.float64)
        sums, counts = reduced[: len(probes)], reduced[len(probes) :]
    result: dict[str, GroundingStats] = {}
    for name in grounded_tasks(tasks):
        per_study = torch.zeros(2, len(studies), dtype=torch.float64)  # [own/shuffled, study]
        targets = torch.zeros(2, len(studies), dtype=torch.float64)
        for index, probe in enumerate(probes):
            if probe.task == name:
                per_study[int(probe.shuffled), probe.study] += sums[index]
                targets[int(probe.shuffled), probe.study] += counts[index]
        scored = targets[0] > 0
        if scored.any():
            result[name] = grounding_stats(per_study[0, scored], per_study[1, scored], int(targets[0, scored].sum()))
    return result


def eval_grounding_studies(
    shards: str, split: str | None, n: int, tasks: TaskMixConfig, spec: VisualVocabSpec, index: ShardIndex | None = None
) -> list[TokenizedStudy]:
    """The trainer's diagnostic studies (`n` = `logging.grounding_studies` of `split` = `data.eval_split`):
    none when off, without an eval split, for a text-only task mix, or when the split has fewer than 2
    usable studies (with a warning)."""
    if not n or split is None or not grounded_tasks(tasks):
        return []
    studies = grounding_studies(shards, split, spec, n, index)
    if len(studies) < 2:
        log.warning("grounding diagnostic off: eval split %r has %d studies with images and a report, it needs 2", split, len(studies))
        return []
    return studies
