"""Visual question answering built from the study's CheXpert labels.

For each observation with a non-blank label, a question phrasing from `VQA_QUESTIONS` can be
asked; the answer is `ANSWERS[label]` ("yes" / "no" / "uncertain"). Blank labels produce no
question: "not mentioned" is not a reliable "no".

Prompt: start, ids(question + "\\n"), image blocks of the input views: the question first, so
the model reads the image knowing what it is asked, and the answer follows the image directly.
Response: ids(answer), eos. `answer_ids` gives the response of each answer so evaluation can
score all three by likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS
from radllm.tasks.config import VQA, TaskMixConfig
from radllm.tasks.example import TaskExample, prompt_response_example
from radllm.tasks.randomness import Rng, draw_subset
from radllm.tasks.study import checked_views
from radllm.tasks.templates import ANSWERS, QUESTION_SUFFIX, pick_template, vqa_questions
from radllm.tasks.tokens import end_id, image_blocks, start_id
from radllm.tasks.views import select_input_views
from radllm.vocab import encode_report
from radllm.vocab_spec import VisualVocabSpec


def vqa_prompt(
    image_codes: Sequence[np.ndarray],
    question: str,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
) -> list[int]:
    """Prompt ids asking `question` about the given views' codes (identical in both stages)."""
    if not image_codes:
        raise ValueError("a VQA prompt needs at least one image")
    if not question.strip():
        raise ValueError("a VQA prompt needs a non-empty question")
    return [start_id(tokenizer), *encode_report(tokenizer, question + QUESTION_SUFFIX), *image_blocks(image_codes, spec)]


def answer_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """Response ids of an answer text from `ANSWERS` (answer tokens + eos)."""
    if answer not in ANSWERS.values():
        raise ValueError(f"unknown answer {answer!r}; expected one of {sorted(ANSWERS.values())}")
    return [*encode_report(tokenizer, answer), end_id(tokenizer)]


def vqa(
    study: TokenizedStudy,
    tokenizer: PreTrainedTokenizerBase,
    spec: VisualVocabSpec,
    rng: Rng,
    config: TaskMixConfig,
) -> list[TaskExample]:
    """Up to `config.vqa_questions_per_study` examples about distinct labelled observations
    (none when every label is blank or the study has no image)."""
    views = checked_views(study, spec)
    labelled = [name for name in OBSERVATIONS if study.labels.get(name) is not None]
    if not views or not labelled:
        return []
    codes = [study.image_codes[i] for i in select_input_views(views, config.max_views)]
    examples = []
    for index in draw_subset(rng, len(labelled), config.vqa_questions_per_study):
        name = labelled[index]
        label = study.labels[name]
        if label not in ANSWERS:
            raise RadllmError(f"study {study.key}: label {name!r} = {label!r}; expected 1, 0, -1 or null")
        question = pick_template(vqa_questions(name), rng)
        prompt = vqa_prompt(codes, question, tokenizer, spec)
        examples.append(prompt_response_example(prompt, answer_ids(tokenizer, ANSWERS[label]), VQA, study.key))
    return examples
