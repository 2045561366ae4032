"""Training tasks: pure functions from a tokenized study to token sequences with loss masks.

Tasks: report generation (image → report), image generation (report → image, condition dropped
for classifier-free guidance), VQA from CheXpert labels, text-only report LM. Stage 1 uses plain
pairs, stage 2 instruction templates. The prompt builders exported here are the ones generation
must call to reproduce the training-time prompts exactly.
"""

from radllm.tasks.config import IMAGE_GENERATION, REPORT_GENERATION, TASK_NAMES, TEXT_LM, VQA, TaskMixConfig
from radllm.tasks.example import IGNORE_INDEX, TaskExample, prompt_response_example
from radllm.tasks.image_generation import image_condition_text, image_generation, image_generation_prompt, unconditional_image_prompt
from radllm.tasks.mix import IMAGE_READING_TASKS, TASKS, TaskMixer, study_rng
from radllm.tasks.report_generation import report_generation, report_generation_prompt, unconditional_report_prompt
from radllm.tasks.templates import ANSWERS, LABEL_OF_ANSWER, vqa_questions
from radllm.tasks.text_lm import text_lm
from radllm.tasks.tokens import end_id, image_block, start_id
from radllm.tasks.views import select_input_views, select_target_view
from radllm.tasks.vqa import answer_ids, vqa, vqa_prompt

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
