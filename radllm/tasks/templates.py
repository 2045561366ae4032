"""The text of every instruction, question and answer the tasks use, and how one is chosen.

Training and generation must build byte-identical prompts, so the banks below are the single
source: the trainer draws a phrasing per example with its rng, generation passes an index (0 by
default). Reordering or editing an entry changes what a trained model expects: append new
phrasings at the end instead.

Stage-1 examples carry no instructions at all (plain image↔report pairs). Stage-2 examples wrap
the same pairs in an instruction drawn from these banks. VQA questions are their own
instruction and look the same in both stages. Every instruction and question comes before the
image or report it is about, so the response always follows its input directly.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Sequence

import numpy as np

from radllm.labels import OBSERVATIONS
from radllm.tasks.randomness import Rng, draw_index

#: Stage 2, report generation: precedes the image block(s), then the report is the response.
REPORT_INSTRUCTIONS: tuple[str, ...] = (
    "Write the radiology report for this chest X-ray.\n",
    "Describe the findings and impression of this chest radiograph.\n",
    "Generate a report for the following chest X-ray.\n",
    "What does this chest X-ray show? Write a full report.\n",
    "Provide the findings and impression for this study.\n",
)

#: Stage 2, image generation: `{report}` is replaced by the report's token ids (never re-tokenized
#: together with the instruction, so the report tokens are identical to the shard's). The report
#: sits between line breaks, not after a space, so no tokenizer has to encode a dangling space.
IMAGE_INSTRUCTIONS: tuple[str, ...] = (
    "Generate a chest X-ray that matches this report:\n{report}\n",
    "Draw the chest radiograph described by the following report.\n{report}\n",
    "Report:\n{report}\nCreate the corresponding chest X-ray.\n",
    "Produce a frontal chest X-ray consistent with this report:\n{report}\n",
)

#: Stage 2, the unconditional image prompt used for classifier-free guidance (report dropped).
UNCONDITIONAL_IMAGE_INSTRUCTION = "Generate a chest X-ray.\n"

REPORT_SLOT = "{report}"

#: Several phrasings per CheXpert observation; a question is asked only when its label is not blank.
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


def pick_template(bank: Sequence[str], template: int | Rng | None) -> str:
    """Entry of `bank` chosen by index, drawn with an rng, or the first one when None."""
    if template is None:
        return bank[0]
    if isinstance(template, (random.Random, np.random.Generator)):
        return bank[draw_index(template, len(bank))]
    index = operator.index(template)
    if not 0 <= index < len(bank):
        raise ValueError(f"template index {index} out of range (this bank has {len(bank)} phrasings)")
    return bank[index]


def split_report_slot(template: str) -> tuple[str, str]:
    """Text before and after `{report}` in an image-generation instruction."""
    if template.count(REPORT_SLOT) != 1:
        raise ValueError(f"image instruction {template!r} must contain {REPORT_SLOT} exactly once")
    before, after = template.split(REPORT_SLOT)
    return before, after
