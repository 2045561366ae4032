"""VQA records: an answer distribution over yes / no / uncertain, scored by likelihood.

Training teaches the response `answer_ids(answer)` (answer tokens + eos) after `vqa_prompt`. The
model's belief in each answer is the probability of that whole response given the prompt, so we
score all three continuations (one prefill, one batched forward) and normalise over them:
p(a) = exp(ll_a) / sum_b exp(ll_b). `p_yes` is the score for AUROC; `answer` the argmax.

Record (the contract with `radllm evaluate`):
    {"task": "vqa", "study_id": str, "observation": str, "question": str,
     "answer": "yes"|"no"|"uncertain", "p_yes": float, "p_answers": {"yes": p, "no": p, "uncertain": p}}

Questions: by default one per study and CheXpert observation, the template phrasing
`vqa_questions(observation)[template]`; or a JSONL of {"study_id", "observation", "question"}.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from radllm.errors import RadllmError
from radllm.generation.decode import score_continuations
from radllm.generation.inputs import StudyInput
from radllm.generation.mode import GenerationMode, JobPlan
from radllm.generation.model import Generator
from radllm.generation.plan import BatchResult, Unit
from radllm.generation.request import GenerateRequest
from radllm.generation.views import prompt_codes
from radllm.jsonl import iter_json_objects
from radllm.labels import OBSERVATIONS
from radllm.tasks import ANSWERS, VQA, answer_ids, vqa_prompt, vqa_questions
from radllm.tasks.example import pick_template

TASK = "vqa"


def unit_key(study_id: str, observation: str, question: str) -> str:
    return json.dumps([study_id, observation, question], ensure_ascii=False)


def record_key(record: dict) -> str:
    return unit_key(str(record["study_id"]), str(record["observation"]), str(record["question"]))


def check_observations(names: Sequence[str]) -> list[str]:
    """`names` validated against the 14 CheXpert observations (the error names the unknown ones)."""
    unknown = [n for n in names if n not in OBSERVATIONS]
    if unknown:
        raise RadllmError(f"unknown observation(s) {unknown}; expected names from {list(OBSERVATIONS)}")
    return list(names)


def template_units(studies: Sequence[StudyInput], observations: Sequence[str], template: int) -> list[Unit]:
    """One question per (study, observation), phrased by template `template` of each observation."""
    questions = {}
    for name in check_observations(observations):
        try:
            questions[name] = pick_template(vqa_questions(name), template)
        except ValueError as err:
            raise RadllmError(f"--template {template}: {err}") from err
    return [
        Unit(unit_key(s.study_id, name, questions[name]), index, s, name, questions[name])
        for index, s in enumerate(studies)
        for name in observations
    ]


def question_units(studies: Sequence[StudyInput], path: str | os.PathLike) -> list[Unit]:
    """Units from a JSONL of {"study_id", "observation", "question"}, grouped in input study order.

    Raises:
        RadllmError: unreadable line, missing field, unknown observation or study id (file:line named).
    """
    path = Path(path)
    index = {s.study_id: i for i, s in enumerate(studies)}
    asked: list[tuple[int, int, str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RadllmError(f"--questions {path}: cannot read ({err})") from err
    for lineno, obj in iter_json_objects(lines, path):
        where = f"{path}:{lineno}"
        if not all(isinstance(obj.get(k), str) and obj[k].strip() for k in ("study_id", "observation", "question")):
            raise RadllmError(f"{where}: expected an object with non-empty strings study_id, observation and question")
        if obj["observation"] not in OBSERVATIONS:
            raise RadllmError(f"{where}: unknown observation {obj['observation']!r}; expected one of {list(OBSERVATIONS)}")
        if obj["study_id"] not in index:
            raise RadllmError(f"{where}: study {obj['study_id']!r} is not in --input")
        asked.append((index[obj["study_id"]], lineno, obj["observation"], obj["question"]))
    if not asked:
        raise RadllmError(f"--questions {path}: no questions")
    asked.sort()
    units = [Unit(unit_key(studies[i].study_id, obs, q), i, studies[i], obs, q) for i, _, obs, q in asked]
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise RadllmError(f"--questions {path}: the same (study_id, observation, question) appears more than once")
    return units


def answer_distribution(gen: Generator, prompts: Sequence[Sequence[int]]) -> list[dict[str, float]]:
    """p(answer) over `ANSWERS` for each prompt (see the module docstring)."""
    answers = list(ANSWERS.values())
    loglik = score_continuations(gen.model, prompts, [answer_ids(gen.tokenizer, a) for a in answers], gen.pad_id)  # [B, 3]
    probs = loglik.double().softmax(dim=-1).cpu().tolist()
    return [dict(zip(answers, row)) for row in probs]


def process(gen: Generator, batch: Sequence[Unit], max_views: int) -> BatchResult:
    """Answer one batch of questions; images of each study are encoded once per batch."""
    studies: dict[str, StudyInput] = {}
    for unit in batch:
        studies.setdefault(unit.study.study_id, unit.study)
    codes, _ = prompt_codes(list(studies.values()), gen.vq, max_views)  # unreadable images are logged there
    codes_of = dict(zip(studies, codes))
    ready = [u for u in batch if codes_of[u.study.study_id] is not None]
    prompts = [vqa_prompt(codes_of[u.study.study_id], u.question, gen.tokenizer, gen.spec) for u in ready]
    records = []
    for unit, p in zip(ready, answer_distribution(gen, prompts) if ready else []):
        records.append(
            {
                "task": TASK, "study_id": unit.study.study_id, "observation": unit.observation, "question": unit.question,
                "answer": max(p, key=p.get), "p_yes": p["yes"], "p_answers": p,
            }
        )
    left_out = [f"question {u.key}: its study's images are unreadable" for u in batch if codes_of[u.study.study_id] is None]
    return BatchResult(records, left_out)


def plan(request: GenerateRequest, gen: Generator, studies: list[StudyInput]) -> JobPlan:
    """One unit per question: the request's --questions file, else every observation's template question."""
    r = request
    units = question_units(studies, r.questions) if r.questions is not None else template_units(studies, r.observations, r.template)
    return JobPlan(units, record_key, partial(process, gen, max_views=r.max_views))


def add_options(parser: argparse.ArgumentParser) -> None:
    """`radllm generate vqa`' own options: which observations, or a file of questions."""
    parser.add_argument("--observations", nargs="+", default=list(OBSERVATIONS), metavar="NAME",
                        help="CheXpert observations to ask about (default all 14)")
    parser.add_argument("--questions", type=Path, default=None, help="JSONL of {study_id, observation, question} instead of the templates")


MODE = GenerationMode(
    "vqa", VQA, help="answer yes/no/uncertain questions about every study, with p(yes) for AUROC",
    input_help="manifest (.jsonl), shards directory (index.json) or folder of PNG/JPEG/DICOM images", out_help="output JSONL",
    plan=plan, add_options=add_options,
)
