"""``baseline_prior``: VQA answers from the train split's label rates, without looking at an image.

For each study and CheXpert observation it answers the question `radllm generate vqa` asks by
default (template 0, built by the same `template_units`, so records pair with a model's by
(study_id, observation, question)) with the train split's answer rates for that observation:

    p(answer) = #train studies labelled answer / #train studies with a non-blank label,
    answers: yes = 1, no = 0, uncertain = -1;   p_yes = p(yes);   answer = argmax (yes > no > uncertain on ties)

Why: VQA is scored only where the reference has a label, and some labels are almost never
negative where they exist (CheXpert's "No Finding" and "Support Devices" are usually labelled only
when positive). A rule that knows only which observation is asked therefore ranks questions well
and reaches a high micro AUROC with no image at all; a model's VQA numbers mean something only
above this prior. An observation never labelled in train gets p_yes 0 and the answer "no"
(p_answers {"yes": 0, "no": 1, "uncertain": 0}): nothing was learned about it, and "no" is what
an unmentioned finding usually is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from radllm.generation.inputs import StudyInput
from radllm.generation.vqa import TASK, template_units
from radllm.labels import OBSERVATIONS, Labels
from radllm.tasks import ANSWERS

PRIOR = "baseline_prior"
QUESTION_TEMPLATE = 0  # `radllm generate vqa --template` default
UNLABELLED_ANSWERS = {"yes": 0.0, "no": 1.0, "uncertain": 0.0}


def answer_counts(labels: Sequence[Labels]) -> dict[str, dict[str, int]]:
    """observation -> {"yes", "no", "uncertain"} -> number of studies with that label (blank ones not counted)."""
    counts = {name: {answer: 0 for answer in ANSWERS.values()} for name in OBSERVATIONS}
    for study in labels:
        for name in OBSERVATIONS:
            value = study.get(name)
            if value is not None:
                counts[name][ANSWERS[value]] += 1
    return counts


def answer_rates(labels: Sequence[Labels]) -> dict[str, dict[str, float]]:
    """observation -> p(answer) among the studies where it is labelled (`UNLABELLED_ANSWERS` if none)."""
    rates = {}
    for name, counts in answer_counts(labels).items():
        total = sum(counts.values())
        rates[name] = {a: n / total for a, n in counts.items()} if total else dict(UNLABELLED_ANSWERS)
    return rates


def prior_predictions(study_ids: Sequence[str], rates: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One ``vqa`` record per (study, observation), in `radllm generate vqa`'s order, all from `rates`."""
    units = template_units([StudyInput(sid) for sid in study_ids], OBSERVATIONS, QUESTION_TEMPLATE)
    records = []
    for unit in units:
        p = rates[unit.observation]
        records.append(
            {
                "task": TASK, "study_id": unit.study.study_id, "observation": unit.observation, "question": unit.question,
                "answer": max(p, key=p.get), "p_yes": p["yes"], "p_answers": dict(p), "baseline": PRIOR,
            }
        )
    return records


def prior_summary(labels: Sequence[Labels], rates: dict[str, dict[str, float]]) -> dict[str, Any]:
    """How the prior was made, for ``baselines.json``: rates, counts and the never-labelled observations."""
    counts = answer_counts(labels)
    return {
        "method": (
            "no image: every study gets, per observation, the reference split's rates of yes / no / uncertain "
            "among its non-blank labels; answer = argmax; question = `radllm generate vqa` template "
            f"{QUESTION_TEMPLATE}; never-labelled observations answer no with p_yes 0"
        ),
        "question_template": QUESTION_TEMPLATE,
        "train_yes_rate": {name: rates[name]["yes"] for name in OBSERVATIONS},
        "answer_rates": rates,
        "n_labelled": {name: sum(c.values()) for name, c in counts.items()},
        "never_labelled": [name for name, c in counts.items() if not sum(c.values())],
    }
