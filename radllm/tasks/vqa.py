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
from radllm.tasks.config import TaskMixConfig
from radllm.tasks.example import (
    Rng,
    TaskExample,
    checked_views,
    draw_subset,
    end_id,
    image_blocks,
    pick_template,
    prompt_response_example,
    select_input_views,
    start_id,
    with_donor_images,
)
from radllm.tasks.registry import TaskSpec, register_task
from radllm.vocab import encode_report
from radllm.vocab_spec import VisualVocabSpec


VQA = "vqa"

#: Several phrasings per CheXpert observation; a question is asked only when its label is not blank.
#: Append new phrasings at the end (`pick_template`).
VQA_QUESTIONS: dict[str, tuple[str, ...]] = {
    "No Finding": (
        "Is this chest X-ray normal?",
        "Is this a normal chest radiograph?",
        "Is the study free of abnormal findings?",
    ),
    "Enlarged Cardiomediastinum": (
        "Is the cardiomediastinal silhouette enlarged?",
        "Is the mediastinum widened?",
        "Does the patient have an enlarged cardiomediastinum?",
    ),
    "Cardiomegaly": (
        "Is there cardiomegaly?",
        "Is the heart enlarged?",
        "Does the patient have cardiomegaly?",
    ),
    "Lung Opacity": (
        "Is there a lung opacity?",
        "Are there any opacities in the lungs?",
        "Is an airspace opacity present?",
    ),
    "Lung Lesion": (
        "Is there a lung lesion?",
        "Is a pulmonary nodule or mass present?",
        "Does the patient have a lung lesion?",
    ),
    "Edema": (
        "Is there pulmonary edema?",
        "Are there signs of pulmonary edema?",
        "Does the patient have edema?",
    ),
    "Consolidation": (
        "Is there consolidation?",
        "Is any lung consolidation present?",
        "Does the image show consolidation?",
    ),
    "Pneumonia": (
        "Is there evidence of pneumonia?",
        "Does the patient have pneumonia?",
        "Are there findings of pneumonia?",
    ),
    "Atelectasis": (
        "Is there atelectasis?",
        "Is any atelectasis present?",
        "Does the patient have atelectasis?",
    ),
    "Pneumothorax": (
        "Is there a pneumothorax?",
        "Is a pneumothorax present?",
        "Does the patient have a pneumothorax?",
    ),
    "Pleural Effusion": (
        "Is there a pleural effusion?",
        "Is there fluid in the pleural space?",
        "Does the patient have a pleural effusion?",
    ),
    "Pleural Other": (
        "Is there any other pleural abnormality?",
        "Is there pleural thickening or another pleural finding?",
        "Are there pleural abnormalities other than effusion?",
    ),
    "Fracture": (
        "Is there a fracture?",
        "Is a rib or other bone fracture visible?",
        "Does the patient have a fracture?",
    ),
    "Support Devices": (
        "Are support devices present?",
        "Are there any lines, tubes or devices?",
        "Is there a support device such as a tube or catheter?",
    ),
}

#: A VQA question is followed by this separator; the answer is the response.
QUESTION_SUFFIX = "\n"

#: Label value → answer text. Blank labels (None) produce no question.
ANSWERS: dict[int, str] = {1: "yes", 0: "no", -1: "uncertain"}

#: Answer text → label value (inverse of `ANSWERS`), for evaluation.
LABEL_OF_ANSWER: dict[str, int] = {text: label for label, text in ANSWERS.items()}


def vqa_questions(observation: str) -> tuple[str, ...]:
    """The question phrasings for one CheXpert observation."""
    try:
        return VQA_QUESTIONS[observation]
    except KeyError:
        raise ValueError(f"unknown observation {observation!r}; expected one of {list(OBSERVATIONS)}") from None


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


def _validate_options(config: TaskMixConfig) -> None:
    if config.vqa_questions_per_study < 1:
        raise RadllmError(f"tasks.vqa_questions_per_study = {config.vqa_questions_per_study}; expected at least 1")


SPEC = register_task(TaskSpec(
    VQA, vqa, position=2, default_weight=0.0, reads_images=True, donor_input=with_donor_images, validate_options=_validate_options,
))
