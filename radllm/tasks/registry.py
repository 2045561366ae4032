"""The task registry: one `TaskSpec` per training task, declared by the task's own module.

Everything that treats tasks differently asks the registry instead of keeping a list of names:
the mixer draws among `task_specs()` in their `position` order and builds examples with
`spec.build`; the training data gives prompt images loss weight for `spec.reads_images`; the
grounding diagnostic swaps a study's input with `spec.donor_input`; `TaskMixConfig.validate`
calls each task's `validate_options`. Adding a task is its module (which registers its spec) and
one import line in `radllm/tasks/__init__.py`.

This module imports no task and no config (the config, the mixer and every task module import
it), so the package has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from radllm.data.sample import TokenizedStudy
from radllm.errors import RadllmError
from radllm.tasks.example import Rng, TaskExample
from radllm.vocab_spec import VisualVocabSpec

#: (study, tokenizer, visual vocabulary, the study's rng, the run's `TaskMixConfig`) -> examples;
#: [] when the task has nothing to say about the study.
TaskBuilder = Callable[[TokenizedStudy, PreTrainedTokenizerBase, VisualVocabSpec, Rng, Any], list[TaskExample]]


@dataclass(frozen=True)
class TaskSpec:
    """One training task, as the mixer, the trainer's data and diagnostics, and the config see it."""

    name: str  # the key of `tasks.weights` and of per-task losses
    build: TaskBuilder
    # Its place in the order every draw lists tasks in (`TaskMixer.study_examples`): the draw of
    # a study depends on it, so existing tasks keep theirs and a new task takes the next number.
    position: int
    default_weight: float = 0.0  # weight in a run config that does not name the task
    reads_images: bool = False  # its prompts show image blocks (`tasks.prompt_image_weight` applies)
    # The study as the task would see it with another study's input (the grounding diagnostic:
    # own vs shuffled input); None for a task whose input is not an image or a report to swap.
    donor_input: Callable[[TokenizedStudy, TokenizedStudy], TokenizedStudy] | None = None
    # Raises RadllmError naming the `tasks.*` key of an option of this task that is out of range.
    validate_options: Callable[[Any], None] | None = None


_SPECS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add `spec` to the registry (each task module calls this once, at import); returns it.

    Raises:
        RadllmError: another task already has the name or the position.
    """
    for other in _SPECS.values():
        if other.name != spec.name and other.position == spec.position:
            raise RadllmError(f"task {spec.name!r} takes position {spec.position}, which {other.name!r} holds")
    if spec.name in _SPECS and _SPECS[spec.name] is not spec:
        raise RadllmError(f"task {spec.name!r} is registered twice")
    _SPECS[spec.name] = spec
    return spec


def task_specs() -> tuple[TaskSpec, ...]:
    """Every registered task, in `position` order."""
    return tuple(sorted(_SPECS.values(), key=lambda spec: spec.position))


def task_names() -> tuple[str, ...]:
    """Names of every registered task, in `position` order."""
    return tuple(spec.name for spec in task_specs())


def task_spec(name: str) -> TaskSpec:
    """The spec of task `name`.

    Raises:
        RadllmError: no such task.
    """
    if name not in _SPECS:
        raise RadllmError(f"unknown task {name!r}; expected one of {list(task_names())}")
    return _SPECS[name]
