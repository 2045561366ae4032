"""Training tasks: pure functions from a tokenized study to token sequences with loss masks.

Tasks: report generation (image → report), image generation (report → image, condition dropped
for classifier-free guidance), VQA from CheXpert labels, text-only report LM. Each is one module
holding its name, its instruction or question banks, its prompt builders and its task function;
`example` holds what they share (the `TaskExample`, token conventions, view selection, rng
draws) and `mix` registers them and draws one per study (`TaskMixConfig`, `TaskMixer`).

Stage 1 uses plain image↔report pairs, stage 2 wraps the same pairs in instruction templates;
VQA questions are their own instruction in both stages. Every instruction and question comes
before the image or report it is about, so the response always follows its input directly. The
prompt builders exported here are the ones generation must call to reproduce the training-time
prompts exactly.
"""

from radllm.tasks.example import (
    IGNORE_INDEX,
    TaskExample,
    end_id,
    image_block,
    prompt_response_example,
    select_input_views,
    select_target_view,
    start_id,
)
from radllm.tasks.image_generation import (
    IMAGE_GENERATION,
    image_condition_text,
    image_generation,
    image_generation_prompt,
    unconditional_image_prompt,
)
from radllm.tasks.mix import IMAGE_READING_TASKS, TASK_NAMES, TASKS, TaskMixConfig, TaskMixer, study_rng
from radllm.tasks.report_generation import REPORT_GENERATION, report_generation, report_generation_prompt, unconditional_report_prompt
from radllm.tasks.text_lm import TEXT_LM, text_lm
from radllm.tasks.vqa import ANSWERS, LABEL_OF_ANSWER, VQA, answer_ids, vqa, vqa_prompt, vqa_questions

__all__ = [
    "ANSWERS",
    "IGNORE_INDEX",
    "IMAGE_GENERATION",
    "IMAGE_READING_TASKS",
    "LABEL_OF_ANSWER",
    "REPORT_GENERATION",
    "TASKS",
    "TASK_NAMES",
    "TEXT_LM",
    "VQA",
    "TaskExample",
    "TaskMixConfig",
    "TaskMixer",
    "answer_ids",
    "end_id",
    "image_block",
    "image_condition_text",
    "image_generation",
    "image_generation_prompt",
    "prompt_response_example",
    "report_generation",
    "report_generation_prompt",
    "select_input_views",
    "select_target_view",
    "start_id",
    "study_rng",
    "text_lm",
    "unconditional_image_prompt",
    "unconditional_report_prompt",
    "vqa",
    "vqa_prompt",
    "vqa_questions",
]
