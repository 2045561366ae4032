"""Text-only language modelling on reports: keeps the LLM's report prose fluent.

Sequence: start, report ids, eos; every token after the start token is a target.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.tasks.config import TaskMixConfig
from radllm.tasks.example import Rng, TaskExample, end_id, prompt_response_example, report_token_ids, start_id
from radllm.tasks.registry import TaskSpec, register_task
from radllm.vocab_spec import VisualVocabSpec

TEXT_LM = "text_lm"


def text_lm(
    study: TokenizedStudy,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    rng: Rng,
    config: TaskMixConfig,
) -> list[TaskExample]:
    """One example, or none for an empty report. `rng` and `config` are unused (same signature as
    every task so the mix can call them uniformly)."""
    del rng, config
    return text_lm_examples([study], tokenizer, spec)


def text_lm_examples(studies: Sequence[TokenizedStudy], tokenizer: PreTrainedTokenizerBase, spec: VisualVocabSpec) -> list[TaskExample]:
    """The text-only LM example of every study with a non-empty report, in order: what held-out text
    perplexity scores (`radllm perplexity`, the trainer's `logging.text_perplexity_studies`)."""
    examples = []
    for study in studies:
        report = report_token_ids(study.report_ids, spec, f"study {study.key}")
        if report:
            examples.append(prompt_response_example([start_id(tokenizer)], [*report, end_id(tokenizer)], TEXT_LM, study.key))
    return examples


SPEC = register_task(TaskSpec(TEXT_LM, text_lm, position=3, default_weight=0.0))
