"""`EncoderSpec`: everything besides the weights that an encoder directory's config.json holds.

One definition shared by the writer (`save_cxr_encoder`, the trainer) and the reader
(`load_cxr_encoder`), so a directory written by one version is validated field by field when read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS

MODEL_TYPE = "radllm-cxr-encoder"
SPEC_VERSION = 1


@dataclass
class EncoderSpec:
    """How to feed a backbone and read its outputs as CheXpert findings.

    The network sees ``x * input_scale + input_shift`` for x in [0, 1], resized to
    ``input_size`` squared. Its head has one logit per `output_names` entry; the encoder exposes
    the logits at `output_indices` under `label_names` (CheXpert names), and a finding is
    positive when its probability is >= its `thresholds` entry.
    """

    arch: str
    label_names: list[str]
    output_names: list[str]
    output_indices: list[int]
    thresholds: list[float]
    input_size: int
    input_scale: float = 2.0
    input_shift: float = -1.0
    arch_options: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> "EncoderSpec":
        """Raise `RadllmError` naming `where` and the inconsistent field; return self."""
        n = len(self.label_names)
        unknown = [name for name in self.label_names if name not in OBSERVATIONS]
        if unknown:
            raise RadllmError(f"{where}: label_names {unknown} are not CheXpert observations {list(OBSERVATIONS)}")
        if len(set(self.label_names)) != n or n == 0:
            raise RadllmError(f"{where}: label_names must be a non-empty list without duplicates, got {self.label_names}")
        if len(self.output_indices) != n or len(self.thresholds) != n:
            raise RadllmError(
                f"{where}: output_indices ({len(self.output_indices)}) and thresholds ({len(self.thresholds)}) "
                f"must each have one entry per label ({n})"
            )
        if any(not 0 <= i < len(self.output_names) for i in self.output_indices):
            raise RadllmError(f"{where}: output_indices {self.output_indices} out of range for {len(self.output_names)} outputs")
        if any(not (math.isfinite(t) and 0.0 <= t <= 1.0) for t in self.thresholds):
            raise RadllmError(f"{where}: thresholds must be probabilities in [0, 1], got {self.thresholds}")
        if self.input_size <= 0:
            raise RadllmError(f"{where}: input_size must be positive, got {self.input_size}")
        return self

    def to_json(self) -> dict[str, Any]:
        """config.json content (Hugging Face style: a `model_type` plus plain fields)."""
        obj = dataclasses.asdict(self)
        obj["input_normalisation"] = {"scale": obj.pop("input_scale"), "shift": obj.pop("input_shift")}
        return {"model_type": MODEL_TYPE, "format_version": SPEC_VERSION, **obj}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "EncoderSpec":
        if not isinstance(obj, dict):
            raise RadllmError(f"{where}: expected a JSON object")
        obj = dict(obj)
        if obj.pop("model_type", None) != MODEL_TYPE:
            raise RadllmError(f"{where}: model_type must be {MODEL_TYPE!r} (is this a radllm CXR encoder directory?)")
        version = obj.pop("format_version", None)
        if version != SPEC_VERSION:
            raise RadllmError(f"{where}: format_version {version!r} is not supported (expected {SPEC_VERSION})")
        norm = obj.pop("input_normalisation", None)
        if not isinstance(norm, dict) or set(norm) != {"scale", "shift"}:
            raise RadllmError(f"{where}: input_normalisation must be an object with 'scale' and 'shift'")
        names = {f.name for f in dataclasses.fields(cls)} - {"input_scale", "input_shift"}
        unknown = set(obj) - names
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING} - set(obj)
        if unknown or missing:
            raise RadllmError(f"{where}: unknown field(s) {sorted(unknown)}, missing field(s) {sorted(missing)}")
        try:
            spec = cls(
                arch=str(obj["arch"]),
                label_names=[str(n) for n in obj["label_names"]],
                output_names=[str(n) for n in obj["output_names"]],
                output_indices=[int(i) for i in obj["output_indices"]],
                thresholds=[float(t) for t in obj["thresholds"]],
                input_size=int(obj["input_size"]),
                input_scale=float(norm["scale"]),
                input_shift=float(norm["shift"]),
                arch_options=dict(obj.get("arch_options") or {}),
            )
        except (TypeError, ValueError) as err:
            raise RadllmError(f"{where}: malformed field: {err}") from err
        return spec.validate(where)
