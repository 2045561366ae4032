"""The training recipe: set up (model, engine, data, anchor, resume), run steps, evaluate, save, export.

One optimizer step on every rank:

1. take `grad_accum` micro-batches of packed rows from each data stream this rank trains on
   (`radllm.training.data.RankBatches`; timed: the data-wait fraction);
2. all-reduce the number of target tokens N of the whole step (all ranks, all micro-batches) so
   the gradient is that of Σ token losses / N, the same for any world size or accumulation: each
   micro-batch backpropagates `sum_loss · world · micro-batches / N`, undoing DeepSpeed's averaging
   over ranks and accumulation steps;
3. forward/backward each micro-batch (ZeRO-3 reduce-scatters gradients during backward);
4. one all-reduce of the step's statistics (`StepStats`): per-task loss sums and counts, real
   tokens, the L2 anchor's local ‖θ − θ₀‖², a non-finite flag, the stop signal, attended pairs;
5. if the loss is finite: the L2 pull on the local fp32 shard (radllm.training.anchor), then
   `engine.step()`. A non-finite loss skips the pull; its gradients are non-finite too, and
   DeepSpeed's ZeRO-2/3 step discards an update whose gradient norm is not finite (and does not
   advance the LR schedule). Such steps are counted; `schedule.max_nonfinite_steps` in a row
   abort the run with a clear error.

The step counter counts optimizer-step attempts (data consumed), so it matches across resumes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from radllm.config import save_config
from radllm.errors import RadllmError
from radllm.modeling.chunked_loss import ChunkedLossHead
from radllm.modeling.packed_nll import PackedScoring, packed_token_nll
from radllm.packing.loss import count_targets, target_mask
from radllm.preemption import Preempted, StopRequest
from radllm.recipe.checkpoint_dirs import checkpoints_dir, tag_for
from radllm.recipe.nonfinite import check_nonfinite_streak
from radllm.recipe.rng import rng_state, set_rng_state
from radllm.training import checkpoint as ckpt
from radllm.training.anchor import L2Anchor, PretrainedWeights, zeros_reference
from radllm.training.config import TrainConfig
from radllm.training.data import LOSS_GROUPS, NO_GROUP, RankBatches, collate_rows, eval_rows, owned_streams
from radllm.training.ds_config import fill_ds_config, offloads_optimizer, zero_stage
from radllm.training.export import export_config, export_from_engine
from radllm.training.flops import attended_pairs, flops_model, peak_flops
from radllm.training.diagnostics import Diagnostics
from radllm.training.model import compute_dtype, load_model, new_token_ids, vocab_parameter_names
from radllm.training.optim import build_optimizer
from radllm.training.preflight import Preflight
from radllm.training.run_log import MetricsLog, flatten_record
from radllm.training.safe_checkpoint import safe_checkpoint
from radllm.training.universal import optimizer_settings, repair_after_universal_load, universal_checkpoint

log = logging.getLogger(__name__)


def task_losses(
    token_losses: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy and target counts per loss group, and the training objective.

    Args:
        token_losses: [B, L] NLL at each label's position (`token_nll` of the logits, or the
            chunked output layer's); labels: [B, L] (IGNORE_INDEX = no loss); groups: [B, L]
            index into `LOSS_GROUPS` of each token (`loss_groups` of a collated batch); weights:
            optional [B, L] loss weight of each label (`loss_weights` of a collated batch).

    Returns:
        fp32 sums [G] and counts [G], G = len(LOSS_GROUPS) (plain NLL: what is logged, comparable
        across weightings), and the objective: Σ weight · NLL over all targets (the plain sum when
        `weights` is None). The target at position t+1 belongs to the group of token t+1.
    """
    per_token = token_losses.reshape(-1)  # [B*L], at each label's position
    group = groups.reshape(-1).clamp(min=0)  # ignored positions add 0 to group 0
    valid = target_mask(labels).reshape(-1).float()
    sums = torch.zeros(len(LOSS_GROUPS), device=per_token.device).index_add(0, group, per_token)
    counts = torch.zeros(len(LOSS_GROUPS), device=per_token.device).index_add(0, group, valid)
    objective = per_token.sum() if weights is None else (per_token * weights.reshape(-1).to(per_token.dtype)).sum()
    return sums, counts, objective


@dataclass
class StepStats:
    """What a step (or an evaluation) sums over ranks, sent as one fp64 vector: a single all-reduce.

    `sums`/`counts`: [G] NLL sums and target counts per `LOSS_GROUPS` entry; then the real
    (non-padding) tokens, the anchor's `‖θ − θ₀‖²`, the non-finite flag, the stop signal, the
    attended (query, key) pairs of the FLOP count, and the samples the readers skipped as corrupt
    or lost to a broken shard. Each is a rank's own value before the all-reduce and the global one
    after it.
    """

    sums: torch.Tensor
    counts: torch.Tensor
    tokens: float = 0.0
    anchor_sq_dist: float = 0.0
    nonfinite: float = 0.0
    stop_signalled: float = 0.0
    attended_pairs: float = 0.0
    examples: float = 0.0  # task examples (packed samples) trained on
    samples_corrupt: float = 0.0  # the readers' counts since this process started (cumulative, not per step)
    samples_missing: float = 0.0

    def to_vector(self) -> torch.Tensor:
        scalars = [getattr(self, f.name) for f in fields(self)[2:]]
        return torch.cat([self.sums, self.counts, torch.tensor(scalars, dtype=torch.float64)])

    @classmethod
    def from_vector(cls, values: torch.Tensor) -> StepStats:
        groups = len(LOSS_GROUPS)
        scalars = {f.name: float(v) for f, v in zip(fields(cls)[2:], values[2 * groups :], strict=True)}
        return cls(values[:groups], values[groups : 2 * groups], **scalars)

    @property
    def loss(self) -> float:
        """Mean NLL per target over all groups."""
        return float(self.sums.sum() / max(float(self.counts.sum()), 1.0))

    @property
    def task_loss(self) -> dict[str, float]:
        """Mean NLL per target of each loss group that has targets."""
        return {name: float(self.sums[i] / self.counts[i]) for i, name in enumerate(LOSS_GROUPS) if self.counts[i] > 0}


@dataclass
class TrainState:
    """Counters that go into every checkpoint."""

    step: int = 0
    tokens_seen: int = 0  # real (non-padding) tokens, all ranks
    targets_seen: int = 0  # tokens that carried loss, all ranks
    skipped_steps: int = 0  # non-finite losses
    nonfinite_streak: int = 0
    best_step: int | None = None  # schedule.keep_best: the step of the best evaluation so far
    best_value: float | None = None
    best_metric: str | None = None  # the keep_best key and mode it was best by ("loss/min")


class Trainer:
    """Everything of one run on one rank (see the module docstring). `train()` runs it to `max_steps`."""

    def __init__(self, config: TrainConfig, checked: Preflight, rank: int, world_size: int, progress: bool = True) -> None:
        """Set the run up in phases (model, optimizer and engine, data, diagnostics), then resume if asked.

        `checked` is the preflight's result: the tokenizer, spec, DeepSpeed JSON, model config,
        shard index and config fingerprint, each read once per run.
        """
        self.config, self.checked, self.rank, self.world_size = config, checked, rank, world_size
        self.tokenizer, self.spec = checked.tokenizer, checked.spec
        self.cuda = torch.cuda.is_available()
        self.dtype = compute_dtype(config.model.dtype, self.cuda)
        resume_from = ckpt.resolve_resume(config.run_dir, config.resume)
        self._setup_layout(resume_from)
        model = self._setup_model()
        self._setup_engine(model)
        self._setup_data()
        self.diagnostics = Diagnostics(config, checked, rank, world_size, self._scoring(), self._all_reduce)
        self.state = TrainState()
        self.stop_request = StopRequest()  # a signal or a launcher's exit: checkpoint at the next step boundary (radllm.preemption)
        self.stop_request.install()
        self.stop_agreed = False
        torch.manual_seed(config.seed + 1000 * (rank + 1))  # dropout etc.: distinct per rank, restored on resume
        if resume_from is not None:
            self._load(resume_from)
        if rank == 0:
            save_config(config, Path(config.run_dir) / "config.yaml")
        self.metrics = MetricsLog(
            config.run_dir, rank == 0, config.schedule.max_steps, self.state.step, config.schedule.log_every, progress
        )

    # ---------------------------------------------------------------- setup phases
    def _setup_layout(self, resume_from: Path | None) -> None:
        """Data streams and the filled DeepSpeed config; a checkpoint written by another world size is loaded universally."""
        config, world_size = self.config, self.world_size
        saved = ckpt.saved_layout(resume_from, self.checked.fingerprint) if resume_from is not None else None
        self.streams = config.data.streams or (saved.streams if saved else world_size)
        if saved is not None and saved.streams != self.streams:
            raise RadllmError(
                f"{resume_from}: written with data.streams = {saved.streams}, this run has {self.streams}; a resumed run keeps its streams"
            )
        streams_per_rank = len(owned_streams(self.rank, world_size, self.streams))
        self.ds_config = fill_ds_config(
            self.checked.ds_json, config.optim, world_size, int(self.checked.model_config.hidden_size), self.dtype == torch.bfloat16,
            where=config.deepspeed, streams_per_rank=streams_per_rank,
        )
        # Another world size: ZeRO's per-rank slices are loaded from their universal form.
        self.resume_universal = saved is not None and saved.world_size != world_size and zero_stage(self.ds_config) > 0
        if self.resume_universal:
            self.ds_config.setdefault("checkpoint", {})["load_universal"] = True

    def _setup_model(self) -> torch.nn.Module:
        """The model to train: loaded (4-bit for QLoRA) with the visual rows, its chunked loss head, LoRA adapters."""
        config = self.config
        quantization = None
        if config.lora.enabled and config.lora.quantize_4bit:
            from radllm.training.lora import quantization_config_4bit

            quantization = quantization_config_4bit(self.dtype)
        self.loaded = load_model(
            config.model, self.checked.model_config, self.spec.vocab_size, self.ds_config, self.dtype, config.seed, quantization
        )
        if quantization is not None and self.rank == 0:
            quantized = sum(type(m).__name__ == "Linear4bit" for m in self.loaded.model.modules())
            log.info("QLoRA: base weights in 4-bit NF4: %d Linear4bit layers", quantized)
        model = self.loaded.model
        # The loss from hidden states, a chunk at a time (radllm.modeling.chunked_loss). peft's
        # trainable-token wrapper computes the head itself, so LoRA runs keep whole logits.
        self.loss_head = None
        if config.model.loss_chunk_tokens and not config.lora.enabled:
            self.loss_head = ChunkedLossHead.convert(model.get_output_embeddings(), config.model.loss_chunk_tokens, model.config)
        if config.lora.enabled:
            from radllm.training.lora import apply_lora

            model = apply_lora(model, config.lora, new_token_ids(self.spec))
        return model

    def _setup_engine(self, model: torch.nn.Module) -> None:
        """Optimizer and schedule, the DeepSpeed engine, the FLOP model of the MFU, and the L2 anchor."""
        import deepspeed

        config, model_config = self.config, self.checked.model_config
        optimizer, schedule = build_optimizer(model, config.optim, config.schedule.max_steps, self.cuda, offloads_optimizer(self.ds_config))
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=schedule, config=self.ds_config, dist_init_required=False
        )
        heads = int(model_config.num_attention_heads)
        head_dim = int(getattr(model_config, "head_dim", None) or model_config.hidden_size // heads)
        self.flops = flops_model(self.engine.module, int(model_config.num_hidden_layers), heads * head_dim)
        self.peak_flops = peak_flops(torch.cuda.get_device_name(), config.logging.peak_tflops) if self.cuda else None
        if self.cuda and self.peak_flops is None and self.rank == 0:
            log.warning(
                "MFU is not logged: no peak FLOP/s known for %r; set logging.peak_tflops (dense bf16 TFLOP/s per device)",
                torch.cuda.get_device_name(),
            )
        self.anchor = self._build_anchor() if config.anchor.lambda_reg > 0 else None

    def _setup_data(self) -> None:
        """This rank's training streams and its fixed evaluation rows."""
        config, index = self.config, self.checked.index
        self.data = RankBatches(
            config.data, config.tasks, self.tokenizer, self.spec, seed=config.seed, micro_batch_size=config.optim.micro_batch_size,
            grad_accum=config.optim.grad_accum, rank=self.rank, world_size=self.world_size, streams=self.streams, index=index,
        )
        self.eval_batch = None
        if config.data.eval_split:
            rows = eval_rows(
                config.data, config.tasks, self.tokenizer, self.spec, seed=config.seed, rank=self.rank, world_size=self.world_size,
                index=index,
            )
            self.eval_batch = collate_rows(rows, self.spec)

    def _scoring(self) -> PackedScoring:
        """How diagnostics pack and split held-out examples: the training row length and batch, this rank's share."""
        config = self.config
        return PackedScoring(
            self.loaded.attn_implementation, self.dtype, self.engine.device, config.data.seq_len, config.optim.micro_batch_size,
            self.rank, self.world_size,
        )

    def _build_anchor(self) -> L2Anchor:
        module = self.engine.module
        stage = self.engine.zero_optimization_stage()
        if self.config.lora.enabled:
            from radllm.training.lora import lora_anchor_parameters

            return L2Anchor(lora_anchor_parameters(module), zeros_reference, stage, self.config.anchor.lambda_reg)
        reference = PretrainedWeights(
            self.config.anchor_source,
            vocab_parameter_names(module),
            noise=self.config.model.new_row_noise,
            seed=self.config.seed,
            include_new_rows=self.config.anchor.include_new_rows,
            text_vocab_size=self.spec.text_vocab_size,
        )
        params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        anchor = L2Anchor(params, reference, stage, self.config.anchor.lambda_reg, reference.pulled_elements)
        log.info("rank %d: L2 anchor holds %d elements of θ₀ (%s)", self.rank, anchor.numel, self.config.anchor_source)
        return anchor

    def _load(self, checkpoint: Path) -> None:
        state = ckpt.read_resume_state(checkpoint, self.checked.fingerprint, self.rank, list(self.data.streams))
        load_dir, tag = checkpoint.parent, checkpoint.name
        if self.resume_universal:
            load_dir, tag = checkpoint, universal_checkpoint(checkpoint, self.rank).name
        torch_optimizer = getattr(self.engine.optimizer, "optimizer", self.engine.optimizer)
        settings = optimizer_settings(torch_optimizer)
        with safe_checkpoint(checkpoint):  # DeepSpeed unpickles with weights_only=False otherwise
            path, _ = self.engine.load_checkpoint(str(load_dir), tag=tag)
        if path is None:
            raise RadllmError(f"{checkpoint}: DeepSpeed could not load it")
        if self.resume_universal:
            repair_after_universal_load(torch_optimizer, settings)
        self.data.load_state_dict(state["data"])
        self.state = TrainState(**state["train"])
        schedule = self.config.schedule
        best = checkpoint.parent / tag_for(self.state.best_step) if self.state.best_step is not None else None
        if self.rank == 0 and best is not None and best.is_dir() and self.state.best_metric == f"{schedule.keep_best}/{schedule.keep_best_mode}":
            self._mark_best(best)  # the link follows the resumed lineage (a rolled-back best is abandoned)
        if state["rng"] is not None:
            set_rng_state(state["rng"])
        log.info("rank %d: resumed from %s at step %d%s", self.rank, checkpoint, self.state.step,
                 " (universal checkpoint: written by another number of ranks)" if self.resume_universal else "")

    # ---------------------------------------------------------------- one step
    def _all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        import deepspeed.comm as dist

        values = values.to(self.engine.device, torch.float64)
        dist.all_reduce(values)
        return values.cpu()

    def _forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`task_losses` of one collated batch: per-group NLL sums and counts, and the weighted objective."""
        batch = {k: v.to(self.engine.device) for k, v in batch.items()}
        token_losses = packed_token_nll(self.engine, batch, self.loaded.attn_implementation, self.dtype, self.loss_head)
        return task_losses(token_losses, batch["labels"], batch["loss_groups"], batch.get("loss_weights"))

    def train_step(self) -> dict[str, Any]:
        """One optimizer step (see the module docstring); returns its global metrics."""
        start = time.perf_counter()
        batches = self.data.step_batches()
        gas = len(batches)  # micro-batches of this rank: grad_accum per owned stream
        data_time = time.perf_counter() - start
        n_targets = float(self._all_reduce(torch.tensor([sum(int(count_targets(b["labels"])) for b in batches)]))[0])
        scale = self.world_size * gas / max(n_targets, 1.0)
        sums = torch.zeros(len(LOSS_GROUPS), dtype=torch.float64)
        counts = torch.zeros(len(LOSS_GROUPS), dtype=torch.float64)
        for index, batch in enumerate(batches):
            task_sum, task_count, objective = self._forward(batch)
            self.engine.backward(objective * scale)
            sums += task_sum.detach().double().cpu()
            counts += task_count.detach().double().cpu()
            if index < gas - 1:
                self.engine.step()  # accumulation micro-step: DeepSpeed only counts it
        real = [b["loss_groups"] != NO_GROUP for b in batches]
        local = StepStats(
            sums,
            counts,
            tokens=sum(int(mask.sum()) for mask in real),
            anchor_sq_dist=float(self.anchor.squared_distance()) if self.anchor else 0.0,  # before the pull: θ of this step
            nonfinite=0.0 if torch.isfinite(sums).all() else 1.0,
            stop_signalled=float(self.stop_request.pending),  # rides on this all-reduce: every rank learns it at the same step
            attended_pairs=sum(attended_pairs(b["cu_seqlens"], mask) for b, mask in zip(batches, real, strict=True)),
            examples=sum(int(mask.flatten()[b["cu_seqlens"][:-1].long()].sum()) for b, mask in zip(batches, real, strict=True)),
            **self.data.samples_lost(),
        )
        stats = StepStats.from_vector(self._all_reduce(local.to_vector()))
        self.stop_agreed = stats.stop_signalled > 0
        lr = float(self.engine.get_lr()[0])
        if self.anchor and stats.nonfinite == 0:
            self.anchor.pull(lr)
        self.engine.step()
        applied = stats.nonfinite == 0 and self.engine.was_step_applied()
        elapsed = time.perf_counter() - start
        record: dict[str, Any] = {
            "loss": stats.loss,
            "lr": lr,
            "grad_norm": _as_float(self.engine.get_global_grad_norm()),
            "tokens": int(stats.tokens),
            "targets": int(n_targets),
            "tokens_per_s": stats.tokens / elapsed,
            "examples": int(stats.examples),
            "examples_per_s": stats.examples / elapsed,
            "data_wait": data_time / elapsed,
            "step_time": elapsed,
            "applied": applied,
            "task_loss": stats.task_loss,
            # samples skipped so far, all ranks: a damaged shard shows here and in tensorboard, not only in a log line
            "data": {"corrupt": int(stats.samples_corrupt), "missing": int(stats.samples_missing)},
        }
        if self.anchor:
            record["anchor_sq_dist"] = stats.anchor_sq_dist
            record["anchor_penalty"] = self.config.anchor.lambda_reg * stats.anchor_sq_dist
        if self.peak_flops is not None:
            record["mfu"] = self.flops.step_flops(stats.tokens, stats.attended_pairs) / (elapsed * self.peak_flops * self.world_size)
        self._count(applied, stats.tokens, n_targets, stats.loss)
        return record

    def _count(self, applied: bool, tokens: float, targets: float, loss: float) -> None:
        self.state.step += 1
        self.state.tokens_seen += int(tokens)
        self.state.targets_seen += int(targets)
        if applied:
            self.state.nonfinite_streak = 0
            return
        self.state.skipped_steps += 1
        self.state.nonfinite_streak += 1
        log.warning("step %d skipped: loss %s (%d in a row)", self.state.step, loss, self.state.nonfinite_streak)
        check_nonfinite_streak(self.state.nonfinite_streak, self.config.schedule.max_nonfinite_steps, self.state.step,
                               "loss or gradient", "check the data, or resume from an earlier checkpoint")

    # ---------------------------------------------------------------- evaluation, saving
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Loss per task on the fixed eval rows (all ranks)."""
        self.engine.eval()
        sums, counts, _ = self._forward(self.eval_batch)
        self.engine.train()
        stats = StepStats.from_vector(self._all_reduce(StepStats(sums.double().cpu(), counts.double().cpu()).to_vector()))
        return {"loss": stats.loss, "targets": int(stats.counts.sum()), "task_loss": stats.task_loss}

    def save(self, best: bool = False) -> Path:
        """Checkpoint the current step on every rank; rank 0 marks it complete (and the best, when it is) and rotates.

        Its wall time and size go to metrics.jsonl (kind "checkpoint") and the log: a pre-empted
        job must finish a step and this save inside the scheduler's grace (slurm's KillWait, the
        USR1 lead time of `#SBATCH --signal`), so users size those from this figure.
        """
        import deepspeed.comm as dist

        started = time.monotonic()
        root = checkpoints_dir(self.config.run_dir)
        tag = tag_for(self.state.step)
        if self.rank == 0:
            for path in ckpt.prepare_save(self.config.run_dir, self.state.step):
                log.warning("checkpoint of a rolled-back trajectory moved to %s (this run resumed from an older step)", path)
        dist.barrier()
        self.engine.save_checkpoint(str(root), tag=tag, client_state={"step": self.state.step}, save_latest=False)
        ckpt.write_rank_state(root / tag, self.rank, {
            "train": asdict(self.state),
            "data": self.data.state_dict(),
            "rng": rng_state(),
            "stage": self.config.tasks.stage,
            "world_size": self.world_size,
            "streams": self.streams,
            "config_fingerprint": self.checked.fingerprint,
        })
        dist.barrier()
        if self.rank == 0:
            ckpt.mark_complete(root / tag)
            if best:
                self._mark_best(root / tag)
        dist.barrier()
        seconds = time.monotonic() - started
        if self.rank == 0:
            size = ckpt.size_bytes(root / tag)
            log.info("checkpoint %s of step %d written in %.1f s (%.2f GB)", root / tag, self.state.step, seconds, size / 1e9)
            self.metrics.checkpoint(self.state.step, {"seconds": round(seconds, 3), "bytes": size})
            ckpt.rotate(self.config.run_dir, self.config.schedule.keep_checkpoints)
        return root / tag

    def _new_best(self, step: int, record: dict[str, Any]) -> bool:
        """Whether this evaluation beats every earlier one on `schedule.keep_best` (then it becomes the best).

        Every rank sees the same all-reduced record, so every rank decides alike.

        Raises:
            RadllmError: the key is not in the eval record (named, with the keys it has).
        """
        key, mode = self.config.schedule.keep_best, self.config.schedule.keep_best_mode
        if key is None:
            return False
        values = flatten_record(record)
        value = values.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            numeric = sorted(k for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool))
            raise RadllmError(f"schedule.keep_best = {key!r}: not a number of the eval record at step {step}; it has {numeric}")
        best = self.state.best_value if self.state.best_metric == f"{key}/{mode}" else None  # a resume may change the key
        if not math.isfinite(value) or (best is not None and not (value > best if mode == "max" else value < best)):
            return False  # a NaN or infinite evaluation is never the best
        self.state.best_step, self.state.best_value, self.state.best_metric = step, float(value), f"{key}/{mode}"
        return True

    def _mark_best(self, checkpoint: Path) -> None:
        """Rank 0: `checkpoints/best` -> `checkpoint`, the step of `TrainState.best_step`."""
        schedule = self.config.schedule
        ckpt.mark_best(checkpoint, {"step": self.state.best_step, "metric": schedule.keep_best,
                                    "mode": schedule.keep_best_mode, "value": self.state.best_value})
        log.info("best %s so far (%s): %.6g at step %d -> %s", schedule.keep_best, schedule.keep_best_mode,
                 self.state.best_value, self.state.best_step, checkpoint)

    # ---------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        """Run to `schedule.max_steps`, evaluating (and sampling reports) and saving on schedule and at the end, then export.

        Returns the run's summary: the `TrainState` counters, the export directory (None for LoRA
        runs, exported from their checkpoint) and the packing efficiency.
        """
        schedule = self.config.schedule
        self.engine.train()
        try:
            while self.state.step < schedule.max_steps:
                record = self.train_step()
                step = self.state.step
                self.metrics.step(step, record)
                last = step == schedule.max_steps
                best = False
                if self.eval_batch is not None and (step % schedule.eval_every == 0 or last):
                    record = self.evaluate()
                    record.update(self.diagnostics.run(self.engine, step, self.metrics))
                    self.metrics.eval(step, record)
                    best = self._new_best(step, record)
                if step % schedule.save_every == 0 or last or self.stop_agreed or best:
                    saved = self.save(best)
                    if self.stop_agreed and not last:
                        raise Preempted(step, str(saved), self.stop_request.reason)
            export = None if self.config.lora.enabled else self._export()
        finally:
            self.metrics.close()
        return {
            "step": self.state.step,
            **asdict(self.state),
            "export": str(export) if export else None,
            "packing_efficiency": self.data.packing_efficiency,
        }

    def _export(self) -> Path | None:
        """The trained model as an HF directory at `export_path` (rank 0 writes; every rank joins the gather)."""
        config = self.config
        model_config = export_config(self.checked.model_config, self.tokenizer, self.spec, config.tasks.image_condition, self.dtype)
        return export_from_engine(self.engine, model_config, config.tokenizer, config.export_path, self.rank)


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
