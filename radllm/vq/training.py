"""The VQ-GAN training recipe: setup -> train (step, log, evaluate, revive, save) -> export.

One recipe serves a single process (`radllm vq-train`) and data-parallel ranks
(`deepspeed tools/train_vqgan.py`): the entry point initialises `torch.distributed` and passes
rank and world size in. Each rank streams its own batches (`radllm.vq.data.ImageStream`). Ranks
stay bit-identical: both models train through `DistributedDataParallel` (weights broadcast from
rank 0 when wrapped; gradients averaged in buckets that overlap the backward pass), the quantizer
all-reduces its usage counts itself, and dead-code revival runs on rank 0 and is broadcast. The
generator's loss runs the discriminator unwrapped, so the gradients it leaves there (zeroed before
the discriminator's own update) cost no communication. Only rank 0 writes logs, TensorBoard
events, checkpoints and the exported model.

Checkpoint layout (`output_dir/checkpoints/step_0000200/`, named, listed and rotated by
`radllm.recipe.checkpoint_dirs`; written as one atomic directory swap, newest K kept):
model.safetensors (VQ model), discriminator.safetensors, optimizer_g.pt / optimizer_d.pt
(tensors only, loaded with weights_only=True) and trainer_state.json (step, epoch, position,
samples seen, `radllm.recipe.rng` states), whose presence marks the checkpoint complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from radllm import atomic
from radllm.config import save_config
from radllm.errors import RadllmError
from radllm.preemption import JobStopped, StopRequest
from radllm.recipe.checkpoint_dirs import checkpoints_dir, complete_checkpoints, rotate, tag_for
from radllm.recipe.nonfinite import check_nonfinite_streak
from radllm.recipe.rng import rng_state, set_rng_state
from radllm.recipe.schedule import warmup_cosine
from radllm.vq.checkpoint import save_vq
from radllm.vq.data import ImageCache, ImageStream, load_image_cache, manifest_images
from radllm.vq.discriminator import PatchDiscriminator
from radllm.vq.losses import ClinicalVQLoss
from radllm.vq.metrics import code_perplexity, codebook_usage, gradient_magnitude_error, psnr, ssim
from radllm.vq.model import VQModel
from radllm.vq.train_config import VQTrainConfig

log = logging.getLogger(__name__)

STATE_FILENAME = "trainer_state.json"
GRID_IMAGES = 8
#: Steps in a row without a readable image on some rank before the run stops: a manifest whose
#: files are gone, not a few corrupt ones.
MAX_UNREADABLE_BATCHES_IN_ROW = 10


@dataclass
class TrainerState:
    """Loop position saved in every checkpoint; `batch_in_epoch` makes mid-epoch resume exact."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    images_unreadable: int = 0  # training images left out of their batch (all ranks)
    codes_revived: int = 0
    nonfinite_skipped: int = 0  # updates skipped because a gradient norm was NaN/inf, in all
    nonfinite_in_row: int = 0  # ... and since the last applied generator update
    rng: dict[str, Any] = field(default_factory=dict)


def weights_checksum(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, bytes): equal iff two copies are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class VQTrainer:
    """Trains a `VQModel` with a `PatchDiscriminator` under `ClinicalVQLoss`.

    Args:
        config: the run config.
        rank, world_size, local_rank: position in the (already initialised) process group;
            defaults mean a single process.
        progress: show tqdm bars (rank 0 only).
    """

    def __init__(
        self, config: VQTrainConfig, rank: int = 0, world_size: int = 1, local_rank: int = 0, progress: bool = True,
        stop: StopRequest | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or StopRequest()  # checked at every step (radllm.preemption); the entry point installs it
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.progress = progress and self.is_main
        self.output_dir = Path(config.output_dir)
        self.device = self._pick_device(local_rank)
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        self.state = TrainerState()
        self.writer: Any = None
        self._batches: Iterator[tuple[tuple[int, int], Tensor, int]] | None = None
        self._unreadable_batches_in_row = 0

    def _pick_device(self, local_rank: int) -> torch.device:
        if self.config.device == "cpu" or (self.config.device == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise RadllmError("VQ train config: device='cuda' but CUDA is not available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)

    def setup(self) -> None:
        """Seed, load data, build models/optimisers/loss, resume if asked, open the log writer."""
        cfg = self.config
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.train_stream, self.eval_data = self._load_data()
        self.model = VQModel(cfg.model).to(self.device)
        self.disc = PatchDiscriminator(cfg.model.in_channels, cfg.loss.disc_channels, cfg.loss.disc_layers).to(self.device)
        self.train_model, self.train_disc = self._data_parallel(self.model), self._data_parallel(self.disc)
        betas = (cfg.optim.beta1, cfg.optim.beta2)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, betas=betas, weight_decay=cfg.optim.weight_decay)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=cfg.optim.disc_lr, betas=betas, weight_decay=cfg.optim.weight_decay)
        self.loss_fn = ClinicalVQLoss(cfg.loss, self._feature_encoder())
        if cfg.resume == "auto":
            self.resume_latest()
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.output_dir / "config.yaml")
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output_dir / "tb"), purge_step=self.state.step or None)

    def _load_data(self) -> tuple[ImageStream, ImageCache]:
        cfg = self.config.data
        train_items = manifest_images(cfg.manifest, cfg.train_split, cfg.views)[: cfg.limit]
        eval_items = manifest_images(cfg.manifest, cfg.eval_split, cfg.views)[: cfg.eval_images]
        for split, items in ((cfg.train_split, train_items), (cfg.eval_split, eval_items)):
            if not items:
                raise RadllmError(f"{cfg.manifest}: no images in split {split!r} (views {cfg.views or 'any'})")
        size = self.config.model.image_size
        train = ImageStream(train_items, size, self.config.optim.batch_size, self.config.seed, self.rank, self.world_size, cfg.num_workers)
        held_out = load_image_cache(eval_items, size, self.progress, f"{cfg.eval_split} images")
        if self.is_main:
            log.info("VQ data: %d %s images (streamed, %d workers), %d %s images at %d px",
                     len(train_items), cfg.train_split, cfg.num_workers, len(held_out), cfg.eval_split, size)
        return train, held_out

    def _feature_encoder(self) -> nn.Module | None:
        loss = self.config.loss
        path = loss.feature_encoder
        if path is None or loss.feature_weight == loss.finding_weight == 0:
            if self.is_main:
                log.info("feature and finding loss terms are off (loss.feature_encoder=%r, loss.feature_weight=%g, loss.finding_weight=%g)",
                         path, loss.feature_weight, loss.finding_weight)
            return None
        from radllm.encoders import load_cxr_encoder

        encoder = load_cxr_encoder(path, device=self.device).freeze()
        if self.is_main:
            log.info("CXR encoder %s: feature weight %g, finding weight %g", path, loss.feature_weight, loss.finding_weight)
        return encoder

    def _distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def _data_parallel(self, module: nn.Module) -> nn.Module:
        """`module` wrapped in DDP when several ranks train (its weights are then rank 0's), else itself.

        Buffers are not re-broadcast at every forward: the quantizer's usage statistics are
        all-reduced where they are computed, so they agree on every rank already.
        """
        if not self._distributed():
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)

    def _sum_over_ranks(self, *values: float) -> list[float]:
        """Each value summed over ranks (one all-reduce), so that all ranks take the same branch."""
        if not self._distributed():
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def train(self) -> dict[str, Any]:
        """Run until `max_steps` or the wall-clock budget; save, evaluate and export at the end."""
        sched = self.config.schedule
        start = time.monotonic()
        budget = sched.max_minutes * 60.0 if sched.max_minutes is not None else None
        bar = tqdm(total=sched.max_steps, initial=self.state.step, desc="vq-train", unit="step", disable=not self.progress)
        last_metrics: dict[str, float] = {}
        stopped_early = False
        while self.state.step < sched.max_steps:
            over_budget, stop_requested = self._sum_over_ranks(budget is not None and time.monotonic() - start >= budget,
                                                               self.stop.pending)
            if stop_requested:  # a signal or a launcher's exit on some rank: every rank saves this step and leaves
                saved = self.save_checkpoint()
                bar.close()
                raise JobStopped(f"pre-empted by {self.stop.reason} at step {self.state.step}"
                                 + (f": checkpoint {saved} saved" if saved else ": rank 0 saved the checkpoint")
                                 + "; rerun with --resume to continue")
            if over_budget:
                stopped_early = True
                log.info("wall-clock budget of %g min reached at step %d", sched.max_minutes, self.state.step)
                break
            batch = self.next_batch()
            if batch is None:
                continue
            last_metrics = self.train_step(batch)
            step = self.state.step
            bar.update(1)
            if self.is_main and step % sched.log_every == 0:
                self._log_scalars("train", last_metrics)
                bar.set_postfix(l1=f"{last_metrics['l1']:.4f}", usage=f"{last_metrics['usage']:.2f}")
            if sched.revive_every and step % sched.revive_every == 0:
                self.revive_codes()
            if step % sched.eval_every == 0 and step < sched.max_steps:
                self.evaluate()
            if step % sched.save_every == 0 and step < sched.max_steps:
                self.save_checkpoint()
        bar.close()
        return self.finish(last_metrics, stopped_early, time.monotonic() - start)

    def next_batch(self) -> Tensor | None:
        """This rank's next batch (float [B, 1, S, S] in [0, 1]), advancing the saved position.

        None when some rank's batch held no readable image: every rank then passes over its batch
        together (the data-parallel ranks must step together), and a run of them is an error.

        Raises:
            RadllmError: `MAX_UNREADABLE_BATCHES_IN_ROW` batches in a row without a readable image.
        """
        if self._batches is None:
            self._batches = self.train_stream.batches(self.state.epoch, self.state.batch_in_epoch)
        (self.state.epoch, self.state.batch_in_epoch), pixels, unreadable = next(self._batches)
        empty_ranks, unreadable, images = self._sum_over_ranks(pixels.shape[0] == 0, unreadable, pixels.shape[0])
        self.state.images_unreadable += int(unreadable)
        if unreadable and self.is_main:
            self.writer.add_scalar("train/images_unreadable", self.state.images_unreadable, self.state.step)
        if not empty_ranks:
            self._unreadable_batches_in_row = 0
            self.state.samples_seen += int(images)
            return pixels.to(self.device).float() / 255.0
        self._unreadable_batches_in_row += 1
        if self._unreadable_batches_in_row >= MAX_UNREADABLE_BATCHES_IN_ROW:
            raise RadllmError(
                f"vq-train: {self._unreadable_batches_in_row} batches in a row held no readable image on some rank "
                f"({self.state.images_unreadable} unreadable so far); check the image paths of {self.config.data.manifest}"
            )
        return None

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, x: Tensor) -> dict[str, float]:
        """One generator update, then (once the GAN is active) one discriminator update."""
        cfg, step = self.config, self.state.step
        lr_g = self._set_lr(self.opt_g, cfg.optim.lr)
        lr_d = self._set_lr(self.opt_d, cfg.optim.disc_lr)
        self.model.train()
        self.disc.train()
        gan_on = self.loss_fn.gan_active(step)
        with self._autocast():
            out = self.train_model(x)
            loss, metrics = self.loss_fn.generator_loss(x, out.reconstruction, out.quantizer, step, self.model.last_decoder_layer, self.disc if gan_on else None)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.disc.zero_grad(set_to_none=True)  # D got gradients through D(x_hat); not its update
        metrics["grad_norm_g"] = self._clip_and_step(self.model, self.opt_g)
        applied = math.isfinite(metrics["grad_norm_g"])

        update_disc = gan_on and applied
        with self._autocast():  # through DDP only when its backward follows
            d_loss, d_metrics = self.loss_fn.discriminator_loss(x, out.reconstruction, step, self.train_disc if update_disc else self.disc)
        if update_disc:
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            d_metrics["grad_norm_d"] = self._clip_and_step(self.disc, self.opt_d)
        self._count_nonfinite(applied, step)
        if applied:
            self._latents = out.quantizer.latents  # revival seeds dead codes from these
        self.state.step += 1
        return metrics | d_metrics | {
            "usage": float(out.quantizer.usage),
            "perplexity": float(out.quantizer.perplexity),
            "lr_g": lr_g,
            "lr_d": lr_d,
        }

    def _set_lr(self, optimizer: torch.optim.Optimizer, base_lr: float) -> float:
        o = self.config.optim
        lr = warmup_cosine(self.state.step, base_lr, o.warmup_steps, self.config.schedule.max_steps, o.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _clip_and_step(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> float:
        """Clip and apply the (DDP-averaged) gradients; a NaN/inf global norm skips the update instead.

        The norm is of the rank-averaged gradients, so every rank takes the same decision.
        Returns the norm before clipping.
        """
        clip = self.config.optim.grad_clip
        norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), clip if clip is not None else float("inf")))
        if math.isfinite(norm):
            optimizer.step()
        else:
            optimizer.zero_grad(set_to_none=True)
        return norm

    def _count_nonfinite(self, applied: bool, step: int) -> None:
        """Count a skipped generator update; abort after `schedule.max_nonfinite_steps` in a row.

        Raises:
            RadllmError: too many consecutive non-finite updates (the weights are left as they were
                before the first of them, and the last checkpoint is intact).
        """
        if applied:
            self.state.nonfinite_in_row = 0
            return
        self.state.nonfinite_skipped += 1
        self.state.nonfinite_in_row += 1
        limit = self.config.schedule.max_nonfinite_steps
        if self.is_main:
            log.warning("step %d: non-finite generator gradient norm; update skipped (%d in a row, limit %d)",
                        step, self.state.nonfinite_in_row, limit)
            self.writer.add_scalar("train/nonfinite_skipped", self.state.nonfinite_skipped, step)
        advice = f"check the input images, or resume from the last checkpoint in {checkpoints_dir(self.output_dir)}"
        check_nonfinite_streak(self.state.nonfinite_in_row, limit, step, "gradient", advice)

    @torch.no_grad()
    def revive_codes(self) -> int:
        """Re-seed dead codes from rank 0's latest encoder outputs; the codebook is then broadcast."""
        quantizer = self.model.quantizer
        revived = 0
        if self.is_main:
            generator = torch.Generator(device=self._latents.device).manual_seed(self.config.seed * 7919 + self.state.step)
            revived = quantizer.revive_dead_codes(self._latents, generator)
        if self._distributed():
            dist.broadcast(quantizer.codebook.weight.data, src=0)
            dist.broadcast(quantizer.usage_share, src=0)
        if self.is_main and revived:
            self.state.codes_revived += revived
            self.writer.add_scalar("train/codes_revived", revived, self.state.step)
        return revived

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Rank 0: tokenize and reconstruct the fixed held-out images; log metrics and a grid."""
        if not self.is_main:
            return {}
        self.model.eval()
        codes, recons, originals = [], [], []
        bs = self.config.optim.batch_size
        for start in range(0, len(self.eval_data), bs):
            x = self.eval_data.batch(range(start, min(start + bs, len(self.eval_data)))).to(self.device)
            with self._autocast():
                c = self.model.encode(x)
                r = self.model.decode_codes(c)
            codes.append(c.cpu())
            recons.append(r.float().cpu())
            originals.append(x.cpu())
        x, r, c = torch.cat(originals), torch.cat(recons), torch.cat(codes)
        k = self.config.model.codebook_size
        metrics = {
            "psnr": float(psnr(x, r).mean()),
            "ssim": float(ssim(x, r).mean()),
            "gradient_magnitude_error": float(gradient_magnitude_error(x, r).mean()),
            "l1": float((x - r).abs().mean()),
            "codebook_usage": codebook_usage(c, k),
            "perplexity": code_perplexity(c, k),
        }
        self._log_scalars("eval", metrics)
        self.writer.add_image("eval/reconstructions", reconstruction_grid(x[:GRID_IMAGES], r[:GRID_IMAGES]), self.state.step)
        log.info("step %d eval: %s", self.state.step, json.dumps({k: round(v, 4) for k, v in metrics.items()}))
        self.model.train()
        return metrics

    def _log_scalars(self, prefix: str, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, self.state.step)

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes `checkpoints/step_XXXXXXX/` atomically and keeps the newest K."""
        if not self.is_main:
            return None
        path = checkpoints_dir(self.output_dir) / tag_for(self.state.step)
        self.state.rng = rng_state()
        with atomic.atomic_directory(path) as tmp:
            save_file(_cpu_state(self.model), str(tmp / "model.safetensors"))
            save_file(_cpu_state(self.disc), str(tmp / "discriminator.safetensors"))
            torch.save(self.opt_g.state_dict(), tmp / "optimizer_g.pt")
            torch.save(self.opt_d.state_dict(), tmp / "optimizer_d.pt")
            atomic.write_json(tmp / STATE_FILENAME, asdict(self.state))
        rotate(self.output_dir, self.config.schedule.keep_checkpoints, STATE_FILENAME)
        log.info("saved checkpoint %s", path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore models, optimisers, loop position and RNG from a step directory (every rank)."""
        try:
            self.model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(self.device)))
            self.disc.load_state_dict(load_file(str(path / "discriminator.safetensors"), device=str(self.device)))
            self.opt_g.load_state_dict(torch.load(path / "optimizer_g.pt", map_location=self.device, weights_only=True))
            self.opt_d.load_state_dict(torch.load(path / "optimizer_d.pt", map_location=self.device, weights_only=True))
            self.state = TrainerState(**json.loads((path / STATE_FILENAME).read_text(encoding="utf-8")))
        except (OSError, RuntimeError, ValueError, TypeError, KeyError) as err:
            raise RadllmError(f"{path}: cannot resume from this checkpoint ({err})") from err
        set_rng_state(self.state.rng)

    def resume_latest(self) -> bool:
        """Continue from the newest complete checkpoint in output_dir, if there is one."""
        found = complete_checkpoints(self.output_dir, STATE_FILENAME)
        if not found:
            if self.is_main:
                log.info("resume=auto: no checkpoint in %s, starting from step 0", checkpoints_dir(self.output_dir))
            return False
        self.load_checkpoint(found[-1])
        if self.is_main:
            log.info("resumed from %s at step %d", found[-1], self.state.step)
        return True

    def finish(self, last_metrics: dict[str, float], stopped_early: bool, seconds: float) -> dict[str, Any]:
        """Final checkpoint, evaluation, export (rank 0) and optional per-rank checksums."""
        eval_metrics = self.evaluate()
        self.save_checkpoint()
        sched = self.config.schedule
        if sched.rank_checksums:
            sums = {"model": weights_checksum(self.model), "discriminator": weights_checksum(self.disc), "step": self.state.step}
            atomic.write_json(self.output_dir / "rank_checksums" / f"rank_{self.rank}.json", sums)
        summary: dict[str, Any] = {
            "step": self.state.step,
            "samples_seen": self.state.samples_seen,
            "images_unreadable": self.state.images_unreadable,
            "nonfinite_skipped": self.state.nonfinite_skipped,
            "stopped_by_time_budget": stopped_early,
            "train_seconds": round(seconds, 1),
            "train": last_metrics,
            "eval": eval_metrics,
        }
        if self.is_main:
            save_vq(self.model, self.config.export_path)
            summary["export_dir"] = self.config.export_path
            atomic.write_json(self.output_dir / "summary.json", summary)
            self.writer.close()
        return summary


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def reconstruction_grid(originals: Tensor, reconstructions: Tensor) -> Tensor:
    """One image [1, 2H, N*W]: originals in the top row, their reconstructions below."""
    top = torch.cat(list(originals.clamp(0, 1)), dim=2)  # [1, H, N*W]
    bottom = torch.cat(list(reconstructions.clamp(0, 1)), dim=2)
    return torch.cat([top, bottom], dim=1)  # [1, 2H, N*W]


def train_vq(
    config: VQTrainConfig, rank: int = 0, world_size: int = 1, local_rank: int = 0, progress: bool = True,
    stop: StopRequest | None = None,
) -> dict[str, Any]:
    """Train a VQ-GAN from `config` (the library entry of `radllm vq-train` and `tools/train_vqgan.py`).

    Returns:
        summary: final step, samples seen, last train metrics, held-out eval metrics (rank 0),
            whether the wall-clock budget stopped the run, and the export directory.

    Raises:
        JobStopped: `stop` became pending on some rank; every rank stopped at the same step and
            rank 0 saved it (`--resume` continues).
    """
    trainer = VQTrainer(config, rank, world_size, local_rank, progress, stop)
    trainer.setup()
    return trainer.train()
