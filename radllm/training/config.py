"""Typed run config of `deepspeed radllm/train.py`: model, data, tasks, optimiser, anchor, LoRA, schedule, logging.

    deepspeed radllm/train.py --config configs/train/tiny_stage1.yaml --set optim.lr=1e-4

Loaded with `radllm.config.load_config(TrainConfig, path, overrides)` (unknown keys and wrong types
fail), then `TrainConfig.validate()` checks values and `preflight` (radllm.training.preflight)
checks every path and the visual-vocabulary agreement between tokenizer, shards and model, all
before any process group or model exists. The merged config is written to `run_dir/config.yaml`.

Only the recipe (radllm.training.loop, with its entry checks in preflight and launch) holds the
whole `TrainConfig`; every component it builds gets its own section (`config.data`, `config.optim`,
...) or plain values, so a component's signature says what it depends on.

Models: `model.init` is the local HF directory the weights start from (the pretrained LLM in
stage 1, the stage-1 export in stage 2); `model.architecture` (a config.json, or a directory
holding one) builds a model from scratch instead. `anchor.pretrained` names the ORIGINAL LLM of
the L2 anti-forgetting pull; it defaults to `model.init`, which is right in stage 1 only, so a
stage-2 config names it explicitly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from radllm.config import config_to_dict, load_config
from radllm.errors import RadllmError
from radllm.modeling import SUPPORTED_IMPLEMENTATIONS
from radllm.packing import OVERFLOW_POLICIES
from radllm.tasks import TaskMixConfig
from radllm.training.lora import LoraSettings

DTYPES = ("auto", "bfloat16", "float32")
ATTENTION = ("auto", *SUPPORTED_IMPLEMENTATIONS)


@dataclass
class ModelOptions:
    """Where the LLM comes from and how it runs."""

    init: str | None = None  # local HF model directory to start from (pretrained LLM or stage-1 export)
    architecture: str | None = None  # config.json (or a dir with one) for a from-scratch model
    dtype: str = "auto"  # auto = bfloat16 on CUDA, float32 on CPU
    attn_implementation: str = "auto"  # auto: flash_attention_2 on CUDA when installed, else flex_attention on CUDA, else sdpa
    gradient_checkpointing: bool = False
    new_row_noise: float = 0.02  # std of the noise on new embedding rows, relative to the old rows' std
    # The training loss from hidden states, this many positions at a time, so the [B, L, V] logits
    # never exist whole (radllm.modeling.chunked_loss); 0 = whole logits. LoRA runs use whole logits.
    loss_chunk_tokens: int = 1024


@dataclass
class DataOptions:
    """Tokenized shards and how they become packed rows."""

    shards: str = MISSING  # directory with index.json (radllm tokenize)
    split: str = "train"
    eval_split: str | None = "val"  # fixed rows for the eval loss; null = no evaluation
    eval_rows: int = 4  # rows per rank in the fixed eval batch
    seq_len: int = 2048
    studies_per_batch: int = 32  # studies read and packed together (more = tighter packing)
    overflow: str = "drop"  # examples longer than seq_len: drop or truncate
    num_workers: int = 1  # reader DataLoader workers per rank
    shuffle_buffer: int = 256
    # Data-parallel streams the split is read as (each its own reader, shuffle and packing; rank r
    # trains on streams r, r+W, ...): null = the world size, or the checkpoint's on resume. Keeping
    # it fixed keeps the global batch and sample order when a run resumes on fewer or more ranks.
    streams: int | None = None


@dataclass
class OptimOptions:
    """torch AdamW (a client optimizer, see radllm.training.optim) with warmup + cosine decay."""

    lr: float = 2e-5
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.0  # decoupled decay towards 0 of matrices (not norms/biases)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 = no clipping
    micro_batch_size: int = 1  # packed rows per rank per forward
    grad_accum: int = 1  # micro-batches per optimizer step


@dataclass
class AnchorOptions:
    """L2 anti-forgetting `lambda_reg·‖θ − θ_pretrained‖²` (radllm.training.anchor)."""

    lambda_reg: float = 0.0
    pretrained: str | None = None  # the ORIGINAL LLM (HF dir); default model.init (stage 1 only)
    include_new_rows: bool = False  # also pull new visual-vocab rows towards their initial values


@dataclass
class ScheduleOptions:
    """When to stop, log, evaluate and checkpoint (in optimizer steps)."""

    max_steps: int = 1000
    log_every: int = 10  # tensorboard/progress cadence (metrics.jsonl gets every step)
    eval_every: int = 200  # also once at the end
    save_every: int = 500  # also once at the end
    keep_checkpoints: int = 3
    max_nonfinite_steps: int = 5  # abort after this many non-finite losses in a row
    # Keep the checkpoint of the best evaluation beside the rotating latest ones: an eval-record key
    # as metrics.jsonl and tensorboard name it (sections joined by "/"), e.g. loss,
    # samples/f1_micro_present, text_perplexity/perplexity, grounding/report_generation/gain_nats;
    # null = off. An evaluation better than every earlier one (keep_best_mode) saves a checkpoint
    # at once; run_dir/checkpoints/best links to it, best.json says why, rotation never deletes it,
    # and `radllm export --checkpoint RUN_DIR/checkpoints/best` exports it. Resume-safe: the best so
    # far is part of every checkpoint.
    keep_best: str | None = None
    keep_best_mode: str = "max"  # max | min: which direction of keep_best is better


@dataclass
class LoggingOptions:
    """What each evaluation logs besides the eval loss (radllm.training.diagnostics)."""

    # eval-split studies (the first N in index order) whose reports are generated greedily at every
    # evaluation, written to tensorboard text and run_dir/samples/step_NNNNNNN.jsonl; 0 = off
    sample_reports: int = 0
    sample_max_new_tokens: int = 256  # report length cap of those samples, in tokens
    # eval-split studies (the first N with images and a report, in index order) whose held-out NLL is
    # compared with their own vs another study's image (report, for image generation) at every
    # evaluation: grounding/<task>/gain_nats, frac_better (radllm.training.grounding); 0 = off
    grounding_studies: int = 64
    # eval-split studies (the first N with a report, in index order) whose reports the model scores
    # as plain text (the text-only LM task: start token, report, eos) at every evaluation:
    # text_perplexity/{nll, perplexity, n_tokens, n_studies}, the language the anti-forgetting
    # anchor is meant to keep (what `radllm perplexity` measures on an export); 0 = off
    text_perplexity_studies: int = 0
    # dense bf16 TFLOP/s of one GPU for the logged MFU (radllm.training.flops); null = look the
    # device up by name (H100/H200/A100/L40S/L4/A10), no MFU for unknown devices
    peak_tflops: float | None = None


KEEP_BEST_MODES = ("max", "min")


@dataclass
class TrainConfig:
    """A whole training run (one stage)."""

    run_dir: str = MISSING  # config.yaml, metrics.jsonl, tb/, checkpoints/, model/
    tokenizer: str = MISSING  # tokenizer dir with radllm.json (radllm build-tokenizer)
    deepspeed: str = "ds_configs/zero3.json"  # relative: the working directory, else the radllm package's ds_configs/
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    tasks: TaskMixConfig = field(default_factory=TaskMixConfig)
    optim: OptimOptions = field(default_factory=OptimOptions)
    anchor: AnchorOptions = field(default_factory=AnchorOptions)
    lora: LoraSettings = field(default_factory=LoraSettings)
    schedule: ScheduleOptions = field(default_factory=ScheduleOptions)
    logging: LoggingOptions = field(default_factory=LoggingOptions)
    export_dir: str | None = None  # final HF model dir; default run_dir/model
    seed: int = 0
    resume: str = "never"  # never | auto | a checkpoint directory (the CLI's --resume overrides)
    # model.init / model.architecture / anchor.pretrained may be Hugging Face Hub repo ids, fetched
    # into the local HF cache (safetensors, configs, tokenizer files); off: local directories only
    hub_download: bool = False

    def validate(self) -> "TrainConfig":
        """Raise `RadllmError` naming the first bad value; returns self."""
        if (self.model.init is None) == (self.model.architecture is None):
            raise RadllmError("model.init and model.architecture: set exactly one (a pretrained HF dir, or a config for a new model)")
        choices = {"model.dtype": (self.model.dtype, DTYPES), "model.attn_implementation": (self.model.attn_implementation, ATTENTION), "data.overflow": (self.data.overflow, OVERFLOW_POLICIES)}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise RadllmError(f"{key} = {value!r}; expected one of {list(allowed)}")
        positive = {
            "data.seq_len": self.data.seq_len, "data.studies_per_batch": self.data.studies_per_batch, "data.eval_rows": self.data.eval_rows,
            "optim.micro_batch_size": self.optim.micro_batch_size, "optim.grad_accum": self.optim.grad_accum,
            "schedule.max_steps": self.schedule.max_steps, "schedule.log_every": self.schedule.log_every,
            "schedule.eval_every": self.schedule.eval_every, "schedule.save_every": self.schedule.save_every,
            "schedule.keep_checkpoints": self.schedule.keep_checkpoints, "schedule.max_nonfinite_steps": self.schedule.max_nonfinite_steps,
            "logging.sample_max_new_tokens": self.logging.sample_max_new_tokens,
        }
        if self.data.streams is not None:
            positive["data.streams"] = self.data.streams
        for key, value in positive.items():
            if value < 1:
                raise RadllmError(f"{key} = {value}; expected a positive integer")
        non_negative = {"data.num_workers": self.data.num_workers, "model.loss_chunk_tokens": self.model.loss_chunk_tokens, "optim.warmup_steps": self.optim.warmup_steps, "optim.weight_decay": self.optim.weight_decay,
                        "optim.grad_clip": self.optim.grad_clip, "anchor.lambda_reg": self.anchor.lambda_reg, "model.new_row_noise": self.model.new_row_noise,
                        "logging.sample_reports": self.logging.sample_reports,
                        "logging.grounding_studies": self.logging.grounding_studies}
        for key, value in non_negative.items():
            if value < 0:
                raise RadllmError(f"{key} = {value}; expected a value >= 0")
        self._check_keep_best()
        if self.logging.sample_reports and self.data.eval_split is None:
            raise RadllmError(f"logging.sample_reports = {self.logging.sample_reports} needs data.eval_split (the studies come from it); set it or use 0")
        if self.logging.peak_tflops is not None and self.logging.peak_tflops <= 0:
            raise RadllmError(f"logging.peak_tflops = {self.logging.peak_tflops}; expected TFLOP/s > 0 (or null)")
        if self.logging.grounding_studies == 1:
            raise RadllmError("logging.grounding_studies = 1; expected 0 (off) or at least 2 (each study is shown another study's image)")
        if self.optim.lr <= 0:
            raise RadllmError(f"optim.lr = {self.optim.lr}; expected > 0")
        if not 0 <= self.optim.min_lr_ratio <= 1:
            raise RadllmError(f"optim.min_lr_ratio = {self.optim.min_lr_ratio}; expected a value in [0, 1]")
        for key, beta in (("optim.beta1", self.optim.beta1), ("optim.beta2", self.optim.beta2)):
            if not 0 <= beta < 1:
                raise RadllmError(f"{key} = {beta}; expected a value in [0, 1) (AdamW's moment decay)")
        if self.optim.eps <= 0:
            raise RadllmError(f"optim.eps = {self.optim.eps}; expected > 0")
        if 2 * self.anchor.lambda_reg * self.optim.lr >= 1:
            raise RadllmError(
                f"anchor.lambda_reg = {self.anchor.lambda_reg} with optim.lr = {self.optim.lr}: the pull moves θ by "
                f"2·lr·lambda_reg = {2 * self.anchor.lambda_reg * self.optim.lr:g} of its distance per step; it must be < 1"
            )
        if self.anchor.lambda_reg > 0 and self.anchor_source is None:
            raise RadllmError("anchor.lambda_reg > 0 needs a pretrained model: set anchor.pretrained (or model.init)")
        if self.resume not in ("never", "auto") and not self.resume:
            raise RadllmError("resume: expected never, auto or a checkpoint directory")
        self.tasks.validate()
        return self

    def _check_keep_best(self) -> None:
        """`schedule.keep_best` names a key some evaluation of this config logs, in a known direction."""
        schedule = self.schedule
        if schedule.keep_best_mode not in KEEP_BEST_MODES:
            raise RadllmError(f"schedule.keep_best_mode = {schedule.keep_best_mode!r}; expected one of {list(KEEP_BEST_MODES)}")
        if schedule.keep_best is None:
            return
        if self.data.eval_split is None:
            raise RadllmError(f"schedule.keep_best = {schedule.keep_best!r} needs evaluations: set data.eval_split")
        needs = {"samples/": ("logging.sample_reports", self.logging.sample_reports),
                 "text_perplexity/": ("logging.text_perplexity_studies", self.logging.text_perplexity_studies),
                 "grounding/": ("logging.grounding_studies", self.logging.grounding_studies)}
        for prefix, (key, value) in needs.items():
            if schedule.keep_best.startswith(prefix) and not value:
                raise RadllmError(f"schedule.keep_best = {schedule.keep_best!r} is logged only with {key} > 0 (it is {value})")

    @property
    def anchor_source(self) -> str | None:
        """HF directory of θ_pretrained (the original LLM)."""
        return self.anchor.pretrained or self.model.init

    @property
    def export_path(self) -> str:
        return self.export_dir or f"{self.run_dir}/model"

    def fingerprint(self) -> str:
        """Hash of what defines the training trajectory (not schedule lengths, logging or paths of outputs).

        Every checkpoint stores it, so a resume under a config that would train differently is refused.
        """
        data = config_to_dict(self)
        for key in ("run_dir", "export_dir", "resume", "schedule", "logging", "deepspeed"):
            data.pop(key, None)
        data["data"].pop("num_workers", None)
        data["data"].pop("streams", None)  # checked against the checkpoint's layout instead (radllm.training.checkpoint.saved_layout)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run_config_of(checkpoint: Path) -> TrainConfig:
    """The merged config a checkpoint's run wrote (`run_dir/config.yaml`; checkpoints are in `run_dir/checkpoints/`)."""
    path = checkpoint.parent.parent / "config.yaml"
    if not path.is_file():
        raise RadllmError(f"{checkpoint}: no {path} next to its checkpoints/ directory; export needs the run's config")
    return load_config(TrainConfig, path)
