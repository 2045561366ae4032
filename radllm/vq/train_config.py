"""Typed run config of VQ-GAN training: architecture, loss, data, optimisation, schedule, outputs.

Loaded with `radllm.config.load_config(VQTrainConfig, path, overrides)`; unknown keys fail. The
merged config is written into `output_dir/config.yaml` so every run can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from radllm.errors import RadllmError
from radllm.vq.config import VQConfig, VQLossConfig

RESUME_MODES = ("never", "auto")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class VQTrainLossConfig(VQLossConfig):
    """The clinical loss weights plus where the frozen CXR encoder of the feature term lives."""

    feature_encoder: str | None = None  # CXR encoder directory/file; None switches the feature and finding terms off


@dataclass
class VQDataOptions:
    """Which images train and evaluate the tokenizer: training images stream, held-out ones are cached."""

    manifest: str = MISSING  # manifest JSONL (radllm.manifest); relative image paths resolve against its folder
    train_split: str = "train"
    eval_split: str = "val"
    views: list[str] = field(default_factory=list)  # e.g. [PA, AP]; empty = every image of every study
    limit: int | None = None  # at most this many training images (quick runs)
    eval_images: int = 64  # fixed held-out images for periodic evaluation and reconstruction grids
    num_workers: int = 2  # DataLoader processes decoding training images per rank; 0 = decode in the training process


@dataclass
class VQOptimOptions:
    """Two Adam optimisers (VQ model incl. quantizer; discriminator) with warmup + cosine decay."""

    batch_size: int = 16  # per rank
    lr: float = 2e-4
    disc_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float | None = 1.0  # max global grad norm per model; None = no clipping


@dataclass
class VQScheduleOptions:
    """When to stop, log, evaluate, revive dead codes and checkpoint (all in optimizer steps)."""

    max_steps: int = 10000
    max_minutes: float | None = None  # wall-clock budget: stop cleanly, save and export when reached
    log_every: int = 20
    eval_every: int = 500  # also evaluates once at the end
    save_every: int = 1000  # also saves once at the end
    keep_checkpoints: int = 3  # rotation: keep the newest K step directories
    revive_every: int = 100  # 0 = never re-seed dead codes
    max_nonfinite_steps: int = 5  # abort after this many skipped (NaN/inf gradient) updates in a row
    rank_checksums: bool = False  # each rank writes sha256 of its weights at the end (sync check)


@dataclass
class VQTrainConfig:
    """A whole VQ-GAN training run."""

    model: VQConfig = field(default_factory=VQConfig)
    loss: VQTrainLossConfig = field(default_factory=VQTrainLossConfig)
    data: VQDataOptions = field(default_factory=VQDataOptions)
    optim: VQOptimOptions = field(default_factory=VQOptimOptions)
    schedule: VQScheduleOptions = field(default_factory=VQScheduleOptions)
    output_dir: str = MISSING  # run directory: config.yaml, checkpoints/, tb/, metrics
    export_dir: str | None = None  # final VQ directory (save_vq); default output_dir/vq
    resume: str = "never"  # "auto": continue from the newest complete checkpoint in output_dir
    seed: int = 0
    device: str = "auto"  # auto = cuda:LOCAL_RANK when available, else cpu
    torch_threads: int | None = None  # intra-op CPU threads per process; None = torch default

    def __post_init__(self) -> None:
        if self.resume not in RESUME_MODES:
            raise RadllmError(f"VQ train config: resume={self.resume!r}, expected one of {list(RESUME_MODES)}")
        if self.device not in DEVICES:
            raise RadllmError(f"VQ train config: device={self.device!r}, expected one of {list(DEVICES)}")
        positive = {
            "optim.batch_size": self.optim.batch_size,
            "schedule.max_steps": self.schedule.max_steps,
            "schedule.log_every": self.schedule.log_every,
            "schedule.eval_every": self.schedule.eval_every,
            "schedule.save_every": self.schedule.save_every,
            "schedule.keep_checkpoints": self.schedule.keep_checkpoints,
            "schedule.max_nonfinite_steps": self.schedule.max_nonfinite_steps,
            "data.eval_images": self.data.eval_images,
        }
        for key, value in positive.items():
            if value < 1:
                raise RadllmError(f"VQ train config: {key}={value}, expected a positive integer")
        if self.data.num_workers < 0:
            raise RadllmError(f"VQ train config: data.num_workers={self.data.num_workers}, expected >= 0")
        if self.schedule.revive_every < 0 or self.optim.warmup_steps < 0:
            raise RadllmError("VQ train config: schedule.revive_every and optim.warmup_steps must be >= 0")
        if self.optim.lr <= 0 or self.optim.disc_lr <= 0:
            raise RadllmError(f"VQ train config: optim.lr={self.optim.lr}, optim.disc_lr={self.optim.disc_lr}, expected > 0")
        if not 0.0 <= self.optim.min_lr_ratio <= 1.0:
            raise RadllmError(f"VQ train config: optim.min_lr_ratio={self.optim.min_lr_ratio}, expected a number in [0, 1]")
        for key, beta in (("optim.beta1", self.optim.beta1), ("optim.beta2", self.optim.beta2)):
            if not 0.0 <= beta < 1.0:
                raise RadllmError(f"VQ train config: {key}={beta}, expected a number in [0, 1) (Adam's moment decay)")
        if self.optim.weight_decay < 0:
            raise RadllmError(f"VQ train config: optim.weight_decay={self.optim.weight_decay}, expected >= 0")
        if self.optim.grad_clip is not None and self.optim.grad_clip <= 0:
            raise RadllmError(f"VQ train config: optim.grad_clip={self.optim.grad_clip}, expected > 0 or null (no clipping)")
        if self.schedule.max_minutes is not None and self.schedule.max_minutes <= 0:
            raise RadllmError(f"VQ train config: schedule.max_minutes={self.schedule.max_minutes}, expected > 0 or null")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise RadllmError(f"VQ train config: torch_threads={self.torch_threads}, expected a positive integer or null")

    @property
    def export_path(self) -> str:
        """Where the final VQ directory goes (the artifact tokenization consumes)."""
        return self.export_dir or f"{self.output_dir}/vq"
