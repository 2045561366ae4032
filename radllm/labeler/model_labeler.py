"""A report labeler from a local Hugging Face model directory, for labelers stronger than the rules.

    radllm evaluate ... --labeler /models/chexbert-hf     # labels generated AND reference reports

CheXbert-style labelers are a text encoder with, per observation, one classification head over
{blank, positive, negative, uncertain}. Any such model saved as a Hugging Face
`AutoModelForSequenceClassification` directory (safetensors, config.json, tokenizer) works once
its config.json says how to read the logits:

    "radllm_labeler": {"observations": ["Enlarged Cardiomediastinum", ...],   # names from radllm.labels
                       "values": [null, 1, 0, -1]}                           # class order of each head

with `num_labels = len(observations) * len(values)`: logits are read as [observation, value] and
each observation takes its most likely value; observations the model does not list are blank.
Loaded with `local_files_only=True` and `trust_remote_code=False`: nothing is downloaded, and no
code from the directory runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch

from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, Labels, empty_labels
from radllm.vocab_spec import sha256_file

CONFIG_KEY = "radllm_labeler"


class ReportLabeler(Protocol):
    """What scoring needs of a labeler: 14 labels per report, and a name to record with the metrics."""

    @property
    def identity(self) -> str: ...

    def label(self, report: str) -> Labels: ...

    def label_many(self, reports: Iterable[str]) -> list[Labels]: ...

VALUES = (None, 1, 0, -1)


class ModelLabeler:
    """Labels reports with a sequence-classification model (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, batch_size: int = 32, device: str = "cpu", max_length: int = 512) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.directory = Path(directory)
        if not (self.directory / "config.json").is_file():
            raise RadllmError(f"--labeler {self.directory}: not a Hugging Face model directory (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True, trust_remote_code=False)
            self.model = AutoModelForSequenceClassification.from_pretrained(self.directory, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as err:
            raise RadllmError(f"--labeler {self.directory}: cannot load a sequence-classification model and tokenizer ({err})") from err
        spec = getattr(self.model.config, CONFIG_KEY, None)
        self.observations, self.values = self._read_spec(spec)
        self.model.to(device).eval()
        self.device, self.batch_size, self.max_length = device, batch_size, max_length
        weights = sorted(self.directory.glob("*.safetensors")) or sorted(self.directory.glob("*.bin"))
        digest = sha256_file(weights[0])[:12] if weights else "unknown"
        self.identity = f"model:{self.directory.name}:{digest}"

    def _read_spec(self, spec: object) -> tuple[list[str], list[int | None]]:
        where = f"--labeler {self.directory}/config.json {CONFIG_KEY}"
        if not isinstance(spec, dict) or not isinstance(spec.get("observations"), list) or not isinstance(spec.get("values"), list):
            raise RadllmError(f"{where}: expected {{\"observations\": [names], \"values\": [class values]}} (radllm.labeler.model_labeler)")
        observations, values = spec["observations"], spec["values"]
        unknown = [o for o in observations if o not in OBSERVATIONS]
        if unknown or len(set(observations)) != len(observations):
            raise RadllmError(f"{where}: observations {unknown or observations} must be distinct names from {list(OBSERVATIONS)}")
        if any(v not in VALUES for v in values) or len(set(values)) != len(values):
            raise RadllmError(f"{where}: values {values} must be distinct labels from {list(VALUES)}")
        if self.model.config.num_labels != len(observations) * len(values):
            raise RadllmError(f"{where}: the model has {self.model.config.num_labels} outputs, expected {len(observations)} × {len(values)}")
        return list(observations), list(values)

    @torch.inference_mode()
    def label_many(self, reports: Iterable[str]) -> list[Labels]:
        """Labels of each report, in order, batch by batch. An empty report (a generated one, or a
        report's missing section) states nothing: every label blank, without running the model."""
        reports = list(reports)
        out: list[Labels] = [empty_labels() for _ in reports]
        written = [i for i, report in enumerate(reports) if report.strip()]
        for start in range(0, len(written), self.batch_size):
            rows = written[start : start + self.batch_size]
            batch = [reports[i] for i in rows]
            inputs = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            logits = self.model(**inputs).logits.view(len(batch), len(self.observations), len(self.values))
            for i, row in zip(rows, logits.argmax(dim=-1).tolist()):
                out[i].update({name: self.values[index] for name, index in zip(self.observations, row)})
        return out

    def label(self, report: str) -> Labels:
        return self.label_many([report])[0]


@lru_cache(maxsize=4)
def load_labeler(directory: str | None, device: str = "cpu") -> ReportLabeler:
    """The rule-based labeler (`directory` None) or a `ModelLabeler` from `directory` (loaded once per process)."""
    if directory is None:
        from radllm.labeler.labeler import default_labeler

        return default_labeler()
    return ModelLabeler(directory, device=device)
