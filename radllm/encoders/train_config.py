"""Run config of `radllm train-cxr-encoder` (the small-cnn classifier), loaded with `load_config`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from radllm.encoders.metrics import THRESHOLD_METRICS
from radllm.encoders.small_cnn import SmallCNNOptions
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS
from radllm.manifest import FRONTAL_VIEWS

#: What an uncertain (-1) label becomes: masked out, or a positive/negative target (CheXpert's
#: U-Ignore, U-Ones and U-Zeros).
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")
#: What a blank (not mentioned) label becomes: masked out (the default: unknown), or a negative,
#: for datasets where an unmentioned finding is known to be absent (phantoms: only what the report
#: mentions is rendered). Both policies apply to every split, so training, threshold selection and
#: the reported metrics read labels the same way.
BLANK_POLICIES = ("ignore", "zeros")


@dataclass
class EncoderDataOptions:
    manifest: str = MISSING  # JSONL manifest with train/val/test splits (radllm.manifest)
    image_size: int = 128  # pixels per side the classifier is trained and run at
    observations: list[str] = field(default_factory=list)  # empty: every observation with both classes in train
    uncertain_policy: str = "ignore"  # one of UNCERTAIN_POLICIES
    blank_policy: str = "ignore"  # one of BLANK_POLICIES
    views: list[str] = field(default_factory=lambda: list(FRONTAL_VIEWS))  # image views used (manifest `view`)
    augment_shift: int = 4  # training images are randomly translated by up to this many pixels
    # Mirror half the training images left-right. Only sound when no trained label is lateralised
    # (CheXpert's are not); it doubles the variety of where focal findings appear.
    augment_flip: bool = False


@dataclass
class EncoderOptimOptions:
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3  # AdamW peak learning rate (linear warmup, then cosine decay to zero)
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    balance_classes: bool = False  # weight positives by n_negative/n_positive per label (capped at 10)


@dataclass
class CXREncoderTrainConfig:
    out_dir: str = MISSING  # encoder directory to write (replaced atomically)
    data: EncoderDataOptions = field(default_factory=EncoderDataOptions)
    model: SmallCNNOptions = field(default_factory=SmallCNNOptions)
    optim: EncoderOptimOptions = field(default_factory=EncoderOptimOptions)
    threshold_metric: str = "f1"  # per-label threshold chosen on val to maximise this ("f1" or "accuracy")
    seed: int = 0
    num_threads: int = 2  # torch intra-op threads
    eval_batch_size: int = 128

    def validate(self) -> "CXREncoderTrainConfig":
        """Check values the type system cannot; raise `RadllmError` naming the key."""
        checks = [
            (self.data.uncertain_policy in UNCERTAIN_POLICIES, "data.uncertain_policy", self.data.uncertain_policy, f"one of {UNCERTAIN_POLICIES}"),
            (self.data.blank_policy in BLANK_POLICIES, "data.blank_policy", self.data.blank_policy, f"one of {BLANK_POLICIES}"),
            (self.threshold_metric in THRESHOLD_METRICS, "threshold_metric", self.threshold_metric, f"one of {THRESHOLD_METRICS}"),
            (not set(self.data.observations) - set(OBSERVATIONS), "data.observations", self.data.observations, f"names from {list(OBSERVATIONS)}"),
            (self.data.image_size >= 8, "data.image_size", self.data.image_size, "at least 8"),
            (self.data.augment_shift >= 0, "data.augment_shift", self.data.augment_shift, ">= 0"),
            (bool(self.data.views), "data.views", self.data.views, "a non-empty list of view names"),
            (self.optim.epochs > 0, "optim.epochs", self.optim.epochs, "> 0"),
            (self.optim.batch_size > 0, "optim.batch_size", self.optim.batch_size, "> 0"),
            (self.optim.lr > 0, "optim.lr", self.optim.lr, "> 0"),
            (self.optim.warmup_steps >= 0, "optim.warmup_steps", self.optim.warmup_steps, ">= 0"),
            (self.num_threads > 0, "num_threads", self.num_threads, "> 0"),
            (self.eval_batch_size > 0, "eval_batch_size", self.eval_batch_size, "> 0"),
        ]
        for ok, key, value, expected in checks:
            if not ok:
                raise RadllmError(f"config key {key} = {value!r}: expected {expected}")
        return self
