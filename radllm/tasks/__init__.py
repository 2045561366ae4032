"""Training tasks: pure functions from a tokenized study to token sequences with loss masks.

Tasks: report generation (image → report), image generation (report → image, condition dropped
for classifier-free guidance), VQA from CheXpert labels, text-only report LM. Each is one module
holding its name, its instruction or question banks, its prompt builders, its task function and
its `TaskSpec`, which it registers (`registry`); `example` holds what they share (the
`TaskExample`, token conventions, view selection, rng draws), `config` the run config's `tasks:`
section (`TaskMixConfig`), and `mix` draws one task per study (`TaskMixer`). A new task is one new
module that registers its spec: every module of this package is imported here, so it registers
without an edit of this file.

Stage 1 uses plain image↔report pairs, stage 2 wraps the same pairs in instruction templates;
VQA questions are their own instruction in both stages. Every instruction and question comes
before the image or report it is about, so the response always follows its input directly. The
prompt builders exported here are the ones generation must call to reproduce the training-time
prompts exactly.
"""

import importlib
import pkgutil

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
from radllm.tasks.config import TaskMixConfig
from radllm.tasks.mix import TaskMixer, study_rng
from radllm.tasks.registry import TaskSpec, task_names, task_spec, task_specs
from radllm.tasks.report_generation import REPORT_GENERATION, report_generation, report_generation_prompt, unconditional_report_prompt
from radllm.tasks.text_lm import TEXT_LM, text_lm, text_lm_examples
from radllm.tasks.vqa import ANSWERS, LABEL_OF_ANSWER, VQA, answer_ids, vqa, vqa_prompt, vqa_questions

for _module in pkgutil.iter_modules(__path__):  # a task module not named above registers itself too
    importlib.import_module(f"{__name__}.{_module.name}")

#: Every task's name, in the order of every draw (each task module registered its task).
TASK_NAMES: tuple[str, ...] = task_names()

__all__ = [
    "ANSWERS",
    "IGNORE_INDEX",
    "IMAGE_GENERATION",
    "LABEL_OF_ANSWER",
    "REPORT_GENERATION",
    "TASK_NAMES",
    "TEXT_LM",
    "VQA",
    "TaskExample",
    "TaskMixConfig",
    "TaskMixer",
    "TaskSpec",
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
    "task_names",
    "task_spec",
    "task_specs",
    "text_lm",
    "text_lm_examples",
    "unconditional_image_prompt",
    "unconditional_report_prompt",
    "vqa",
    "vqa_prompt",
    "vqa_questions",
]
