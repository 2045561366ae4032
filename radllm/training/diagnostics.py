"""What an evaluation measures beyond the eval loss: generated-report samples, grounding, held-out text perplexity.

A falling eval loss hides what a radiologist would look at: what the model writes for a held-out
study (`radllm.training.samples`), whether its targets depend on the image it is shown
(`radllm.training.grounding`), and whether it still models report text as a language model
(held-out text perplexity: the text-only LM task's NLL per token, exp'd, as `radllm perplexity`
computes it on an export; the pretrained LM's own task, which the L2 anchor is there to keep). The trainer builds one `Diagnostics` at setup (its studies are the
same on every rank and read once) and calls `run` at every evaluation, on every rank: under
ZeRO-3 each forward gathers parameters collectively, so every rank runs the same forwards. A new
diagnostic is one method here and one line in `run`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

import torch

from radllm.data.split import iter_split
from radllm.modeling.packed_nll import PackedScoring, per_example_nll
from radllm.tasks import text_lm_examples
from radllm.training.config import TrainConfig
from radllm.training.grounding import eval_grounding_studies, measure_grounding
from radllm.training.preflight import Preflight
from radllm.training.run_log import MetricsLog
from radllm.training.samples import sample_reports, sample_scores, sample_studies, samples_table, write_samples

log = logging.getLogger(__name__)


class Diagnostics:
    """The evaluation-time diagnostics of one rank (`logging.sample_reports`, `logging.grounding_studies`)."""

    def __init__(
        self,
        config: TrainConfig,
        checked: Preflight,
        rank: int,
        world_size: int,
        scoring: PackedScoring,
        all_reduce: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """`scoring`: how the grounding rows are packed and split over ranks; `all_reduce` sums a
        float64 tensor over all ranks (the trainer's)."""
        self.config, self.checked, self.rank, self.world_size = config, checked, rank, world_size
        self.scoring, self.all_reduce = scoring, all_reduce
        data, logging_options = config.data, config.logging
        self.sample_studies = []
        if logging_options.sample_reports:
            self.sample_studies = sample_studies(data.shards, data.eval_split, logging_options.sample_reports, checked.spec, checked.index)
        self.grounding_studies = eval_grounding_studies(
            data.shards, data.eval_split, logging_options.grounding_studies, config.tasks, checked.spec, checked.index
        )
        self.text_examples = []
        if logging_options.text_perplexity_studies and data.eval_split is not None:
            studies = (s for s in iter_split(data.shards, data.eval_split, checked.spec, checked.index) if len(s.report_ids))
            self.text_examples = text_lm_examples(list(islice(studies, logging_options.text_perplexity_studies)), checked.tokenizer, checked.spec)

    def run(self, engine: Any, step: int, metrics: MetricsLog) -> dict[str, Any]:
        """Every diagnostic that is on, for the evaluation record of `step` (the same on every rank).

        `engine` (the DeepSpeed engine) is put in eval mode for the forwards and back in train mode.
        """
        record: dict[str, Any] = {}
        engine.eval()
        try:
            if self.sample_studies:
                record["samples"] = self._samples(engine, step, metrics)
            if self.grounding_studies:
                record["grounding"] = self._grounding(engine)
            if self.text_examples:
                record["text_perplexity"] = self._text_perplexity(engine)
        finally:
            engine.train()
        return record

    def _samples(self, engine: Any, step: int, metrics: MetricsLog) -> dict[str, float]:
        """Generated-report samples (`radllm.training.samples`): identical forwards on every rank, rank 0 writes.

        Returns their clinical scores (`sample_scores`), the same on every rank.
        """
        start = time.perf_counter()
        records = sample_reports(
            engine.module, self.checked.tokenizer, self.checked.spec, self.sample_studies, stage=self.config.tasks.stage,
            max_views=self.config.tasks.max_views, max_new_tokens=self.config.logging.sample_max_new_tokens,
            stop_together=self._all_ranks_done,
        )
        if self.rank == 0:
            path = write_samples(self.config.run_dir, step, records)
            metrics.text("samples/reports", step, samples_table(records))
            log.info("step %d: %d report samples in %.1f s -> %s", step, len(records), time.perf_counter() - start, path)
        return sample_scores(records)

    def _grounding(self, engine: Any) -> dict[str, dict[str, Any]]:
        """Own- vs shuffled-image NLL per image-conditioned task (`radllm.training.grounding`): rows split over ranks, summed."""
        stats = measure_grounding(
            engine, self.grounding_studies, self.checked.tokenizer, self.checked.spec, self.config.tasks, self.config.seed,
            self.scoring, self.all_reduce,
        )
        return {task: value.to_json() for task, value in stats.items()}

    def _text_perplexity(self, engine: Any) -> dict[str, float]:
        """exp(token-weighted mean NLL) of the held-out reports as plain text: rows split over ranks, summed."""
        sums, counts = per_example_nll(engine, self.text_examples, self.checked.tokenizer.pad_token_id, self.scoring)
        total, n_tokens = (float(v) for v in self.all_reduce(torch.stack([sums.sum(), counts.sum()])))
        nll = total / max(n_tokens, 1.0)
        return {"nll": nll, "perplexity": math.exp(nll), "n_tokens": int(n_tokens), "n_studies": len(self.text_examples)}

    def _all_ranks_done(self, done: bool) -> bool:
        """The rank-agreed stopping rule of sample decoding: True once every rank's rows have ended."""
        return float(self.all_reduce(torch.tensor([0.0 if done else 1.0]))[0]) == 0.0
