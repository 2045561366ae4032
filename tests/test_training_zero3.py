"""The trainer under the real `deepspeed` launcher (2 CPU ranks, gloo, ZeRO-3) against plain-torch references.

One uninterrupted 2-rank run ("run A", λ_reg > 0, grad accumulation 2, clipping, weight decay) is
shared by several tests:
- its per-step losses and ‖θ − θ₀‖² equal a single-process reference written here in plain
  torch (full parameters, naive L2 pull θ ← θ − lr·2λ·(θ − θ₀) over the old vocabulary rows,
  torch AdamW, clip_grad_norm_), and its exported weights equal the reference's weights;
- its export loads in plain transformers and reproduces the engine's eval loss;
- a run killed with SIGKILL and resumed with `--resume auto` as a simulated 2-node job (two
  launchers, node ranks 0 and 1, loopback) logs the same losses as run A from the resume on;
- stage 2 starts from run A's export with θ₀ = the original pretrained model;
- its generated-report samples (`logging.sample_reports`), decoded on both ranks under ZeRO-3,
  equal single-process generation from its export (run B, without samples, matching run A's
  losses also shows that sampling leaves training untouched);
- its grounding diagnostic (own- vs shuffled-image NLL, `logging.grounding_studies`), scored on
  both ranks' rows under ZeRO-3, equals a single-process measurement on its export.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from launching import run_group
from safetensors.torch import load_file
from training_fixtures import REPO, logged_train_steps, make_training_artifacts, write_train_config
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from radllm.cli import main as cli_main
from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.modeling import model_inputs_for_packed_batch
from radllm.modeling.packed_nll import PackedScoring
from radllm.packing import causal_lm_loss
from radllm.training.checkpoint import complete_checkpoints
from radllm.training.config import TrainConfig
from radllm.training.data import PackedBatches, collate_rows, eval_rows
from radllm.training.grounding import eval_grounding_studies, measure_grounding
from radllm.training.run_log import read_metrics
from radllm.training.samples import sample_reports, sample_scores, sample_studies, samples_path, samples_table
from radllm.training.model import add_visual_rows
from radllm.vocab import load_tokenizer

pytestmark = pytest.mark.slow
LAUNCHER = Path(sys.executable).parent / "deepspeed"
ENV = os.environ | {"DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(config: Path, *extra: str, timeout: int = 780, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    port = free_port()
    cmd = [str(LAUNCHER), "--num_accelerators", "2", "--master_port", str(port), str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress", *extra]
    result = run_group(cmd, cwd=REPO, env=env or ENV, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # DeepSpeed's CPU comm op never unlinks its 69-MB shared-memory segments; radllm does.
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))
    return result


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_training_artifacts(tmp_path_factory.mktemp("train-artifacts"))


@pytest.fixture(scope="module")
def run_a(artifacts, tmp_path_factory):
    root = tmp_path_factory.mktemp("run-a")
    config = write_train_config(root / "a.yaml", artifacts, root / "run", tasks=CURRICULUM,
                                logging={"sample_reports": 2, "sample_max_new_tokens": 12, "text_perplexity_studies": 1000})
    launch(config)
    return load_config(TrainConfig, config)


#: Run A trains with every report-target option of the grounding curriculum, so the weighted
#: objective, the corrupted inputs, the image-dropped report prompts and the prompt images made
#: targets are checked against the reference too.
CURRICULUM = {
    "stage": 1, "weights": {"report_generation": 1.0, "image_generation": 1.0, "vqa": 0.0, "text_lm": 0.0},
    "report_format": "impression_first", "impression_weight": 3.0, "word_dropout": 0.1, "image_loss_weight": 0.5,
    "report_drop_prob": 0.2, "prompt_image_weight": 0.25, "image_condition": "impression",
}


def weighted_nll(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ weight·NLL, Σ NLL) of a batch, one target at a time (the reference's own loss)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    weights = batch.get("loss_weights", torch.ones(batch["labels"].shape))
    weighted, plain = torch.zeros(()), torch.zeros(())
    for b, t in (batch["labels"][:, 1:] != -100).nonzero().tolist():
        nll = -log_probs[b, t, batch["labels"][b, t + 1]]
        weighted, plain = weighted + weights[b, t + 1] * nll, plain + nll
    return weighted, plain


def lr_at(step: int, config: TrainConfig) -> float:
    """Warmup + cosine, written out again for the reference."""
    o, total = config.optim, config.schedule.max_steps
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    t = (step - o.warmup_steps) / (total - o.warmup_steps)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def reference_run(config: TrainConfig, world_size: int = 2):
    """Plain single-process training on the union of the ranks' micro-batches; returns (losses, distances, model)."""
    tokenizer, spec = load_tokenizer(config.tokenizer)
    model = LlamaForCausalLM.from_pretrained(config.model.init, dtype=torch.float32, attn_implementation="sdpa")
    text_rows = model.config.vocab_size
    add_visual_rows(model, spec.vocab_size, config.model.new_row_noise, config.seed)
    model.config.use_cache = False
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        mask[name][text_rows:] = 0  # new visual rows are not pulled
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    o = config.optim
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    streams = [
        PackedBatches(
            config.data, config.tasks, tokenizer, spec,
            seed=config.seed, micro_batch_size=o.micro_batch_size, stream=rank, streams=world_size,
        )
        for rank in range(world_size)
    ]
    losses, distances = [], []
    for step in range(config.schedule.max_steps):
        batches = [s.next_batch() for s in streams for _ in range(o.grad_accum)]
        opt.zero_grad()
        total, count = 0.0, 0
        n = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for batch in batches:
            logits = model(**model_inputs_for_packed_batch(batch, "sdpa")).logits
            objective, sum_loss = weighted_nll(logits, batch)
            (objective / n).backward()
            total += float(sum_loss.detach())
            count += int((batch["labels"][:, 1:] != -100).sum())
        losses.append(total / count)
        lr = lr_at(step, config)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            distances.append(sum(float((((p - anchor[k]) * mask[k]) ** 2).sum()) for k, p in model.named_parameters()))
            for k, p in model.named_parameters():
                p -= lr * 2 * config.anchor.lambda_reg * (p - anchor[k]) * mask[k]
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
    return losses, distances, model


def test_zero3_losses_and_l2_pull_match_a_single_process_reference(run_a):
    metrics = read_metrics(run_a.run_dir)
    assert sorted(metrics) == list(range(1, 7))
    losses, distances, model = reference_run(run_a)
    assert [metrics[s]["loss"] for s in range(1, 7)] == pytest.approx(losses, rel=2e-5)
    assert [metrics[s]["anchor_sq_dist"] for s in range(1, 7)] == pytest.approx(distances, rel=1e-4, abs=1e-9)
    assert distances[0] == 0 and distances[-1] > 0  # θ₀ is exactly the loaded model's old rows
    assert all(metrics[s]["applied"] for s in metrics)
    exported = load_file(str(Path(run_a.export_path) / "model.safetensors"))
    for name, param in model.named_parameters():
        torch.testing.assert_close(exported[name], param.detach(), rtol=1e-4, atol=2e-5, msg=name)


@pytest.mark.parametrize("ds_config", ["zero2.json", "zero3_offload.json"])
def test_zero2_and_cpu_offload_follow_the_same_reference(artifacts, tmp_path, ds_config):
    # ZeRO-1/2 pull the fp32 fragment through `_hp_mapping`; offload keeps the fp32 masters on
    # the CPU optimizer: both must give exactly the single-process trajectory too.
    config = write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run", deepspeed=f"ds_configs/{ds_config}")
    launch(config)
    loaded = load_config(TrainConfig, config)
    metrics = read_metrics(loaded.run_dir)
    losses, distances, _ = reference_run(loaded)
    assert [metrics[s]["loss"] for s in range(1, 7)] == pytest.approx(losses, rel=2e-5)
    assert [metrics[s]["anchor_sq_dist"] for s in range(1, 7)] == pytest.approx(distances, rel=1e-4, abs=1e-9)
    assert distances[-1] > 0


def test_export_loads_in_plain_transformers_and_reproduces_the_engine_eval_loss(run_a, tmp_path):
    export = Path(run_a.export_path)
    model = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(export)
    _, spec = load_tokenizer(run_a.tokenizer)
    assert (export / "radllm.json").is_file() and json.loads((export / "radllm.json").read_text()) == spec.to_json()
    assert len(tokenizer) <= model.config.vocab_size == spec.vocab_size
    assert model.config.radllm_image_condition == "impression"  # what `generate images` follows
    engine_eval = read_metrics(run_a.run_dir, "eval")[6]
    total = count = 0
    for rank in range(2):
        batch = collate_rows(eval_rows(run_a.data, run_a.tasks, tokenizer, spec, seed=run_a.seed, rank=rank, world_size=2), spec)
        with torch.no_grad():
            logits = model(**model_inputs_for_packed_batch(batch, "sdpa")).logits
        sum_loss, n = causal_lm_loss(logits, batch["labels"])
        total, count = total + float(sum_loss), count + int(n)
    assert count == engine_eval["targets"]
    assert total / count == pytest.approx(engine_eval["loss"], rel=1e-5)
    # Offline export from the ZeRO shards (zero_to_fp32) gives the same weights as the live gather.
    offline = tmp_path / "offline"
    last = complete_checkpoints(run_a.run_dir)[-1]
    assert last.name == "step_0000006"
    assert cli_main(["export", "--checkpoint", str(last), "--out", str(offline)]) == 0
    assert json.loads((offline / "config.json").read_text())["radllm_image_condition"] == "impression"
    a, b = load_file(str(export / "model.safetensors")), load_file(str(offline / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)


def test_report_samples_at_eval_steps_equal_single_process_generation_from_the_export(run_a):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    tokenizer, spec = load_tokenizer(run_a.tokenizer)
    studies = sample_studies(run_a.data.shards, run_a.data.eval_split, run_a.logging.sample_reports, spec)
    model = AutoModelForCausalLM.from_pretrained(run_a.export_path, dtype=torch.float32, attn_implementation="sdpa").eval()
    expected = sample_reports(  # one process, rows leave the batch as they end
        model, tokenizer, spec, studies, stage=run_a.tasks.stage, max_views=run_a.tasks.max_views,
        max_new_tokens=run_a.logging.sample_max_new_tokens,
    )
    assert len(expected) == 2 and any(r["report"] for r in expected)
    files = sorted(samples_path(run_a.run_dir, 0).parent.iterdir())
    assert [f.name for f in files] == ["step_0000003.jsonl", "step_0000006.jsonl"]  # the eval steps
    early, final = ([json.loads(line) for line in f.read_text().splitlines()] for f in files)
    assert final == [{"step": 6, **r} for r in expected]  # step 6 is the exported weights
    assert [(r["study_id"], r["reference"]) for r in early] == [(r["study_id"], r["reference"]) for r in expected]
    events = EventAccumulator(str(Path(run_a.run_dir) / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    texts = {e.step: make_ndarray(e.tensor_proto).item().decode() for e in events.Tensors("samples/reports/text_summary")}
    assert sorted(texts) == [3, 6] and texts[6] == samples_table(expected)
    evals = read_metrics(run_a.run_dir, kind="eval")
    assert sorted(evals) == [3, 6] and evals[6]["samples"] == sample_scores(expected)


def test_grounding_at_eval_steps_equals_a_single_process_measurement_on_the_export(run_a):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tokenizer, spec = load_tokenizer(run_a.tokenizer)
    # The default logging.grounding_studies covers the whole val split.
    studies = eval_grounding_studies(run_a.data.shards, run_a.data.eval_split, run_a.logging.grounding_studies, run_a.tasks, spec)
    model = AutoModelForCausalLM.from_pretrained(run_a.export_path, dtype=torch.float32, attn_implementation="sdpa").eval()
    scoring = PackedScoring("sdpa", tokens_per_row=run_a.data.seq_len, rows_per_batch=3)  # one process, other batches
    expected = measure_grounding(model, studies, tokenizer, spec, run_a.tasks, run_a.seed, scoring)
    assert len(studies) >= 2 and sorted(expected) == ["image_generation", "report_generation"]
    evals = read_metrics(run_a.run_dir, kind="eval")
    assert sorted(evals[3]["grounding"]) == sorted(evals[6]["grounding"]) == sorted(expected)
    for task, stats in expected.items():
        logged = evals[6]["grounding"][task]  # step 6 is the exported weights
        assert logged["n_studies"] == stats.n_studies == len(studies) and logged["n_targets"] == stats.n_targets > 0, task
        assert logged == pytest.approx(stats.to_json(), rel=1e-5, abs=1e-6), task
        assert evals[3]["grounding"][task]["nll_own"] != pytest.approx(logged["nll_own"], rel=1e-3), task  # measured anew each time
    events = EventAccumulator(str(Path(run_a.run_dir) / "tb"))
    events.Reload()
    gains = {e.step: e.value for e in events.Scalars("eval/grounding/report_generation/gain_nats")}
    assert sorted(gains) == [3, 6] and gains[6] == pytest.approx(expected["report_generation"].gain_nats, rel=1e-5, abs=1e-6)


def test_sigkill_then_resume_as_two_simulated_nodes_matches_the_uninterrupted_run(run_a, artifacts, tmp_path):
    run_dir = tmp_path / "run"
    config = write_train_config(tmp_path / "b.yaml", artifacts, run_dir, tasks=CURRICULUM)  # run A's task options
    cmd = [str(LAUNCHER), "--num_accelerators", "2", "--master_port", str(free_port()), str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = run_dir / "checkpoints" / "step_0000002" / "COMPLETE"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists()
    done = read_metrics(run_dir)
    assert max(done) < 6, "the run finished before it could be killed"
    # A save killed midway (no COMPLETE marker) must never be picked.
    fake = run_dir / "checkpoints" / "step_0000004"
    fake.mkdir(exist_ok=True)
    (fake / "garbage").write_text("half-written")

    # Resume as two "nodes" with one process each, the way scripts/slurm/train.sbatch launches.
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node0 slots=1\nnode1 slots=1\n")
    port = str(free_port())
    procs = []
    for node_rank in (0, 1):
        node_cmd = [str(LAUNCHER), "--no_ssh", "--hostfile", str(hostfile), "--num_nodes", "2", "--node_rank", str(node_rank),
                    "--num_accelerators", "1", "--master_addr", "127.0.0.1", "--master_port", port,
                    str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress", "--resume", "auto"]
        procs.append(subprocess.Popen(node_cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "resumed from" in outputs[0] and "step_0000002" in outputs[0]

    expected, resumed = read_metrics(run_a.run_dir), read_metrics(run_dir)
    for step in range(3, 7):
        assert resumed[step]["loss"] == pytest.approx(expected[step]["loss"], rel=1e-6), step
        assert resumed[step]["anchor_sq_dist"] == pytest.approx(expected[step]["anchor_sq_dist"], rel=1e-6), step  # θ₀ rebuilt
    assert [p.name for p in complete_checkpoints(run_dir)] == ["step_0000004", "step_0000006"]
    assert not (fake / "garbage").exists()  # the half-written directory was replaced by a real save


def test_preemption_signal_to_one_rank_checkpoints_both_and_resume_continues_identically(run_a, artifacts, tmp_path):
    """SIGUSR1 (slurm's pre-emption notice) to rank 1 only: both ranks save the same step and exit 75;
    `--resume auto` then logs run A's losses from the next step on."""
    import psutil

    from radllm.preemption import PREEMPTED_EXIT_CODE

    run_dir = tmp_path / "run"
    config = write_train_config(tmp_path / "p.yaml", artifacts, run_dir, tasks=CURRICULUM)  # run A's task options
    cmd = [str(LAUNCHER), "--num_accelerators", "2", "--master_port", str(free_port()), str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while 1 not in logged_train_steps(run_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        ranks = [p for p in psutil.Process(proc.pid).children(recursive=True) if any(a.startswith("--local_rank") for a in p.cmdline())]
        rank1 = next(p for p in ranks if "--local_rank=1" in p.cmdline())
        rank1.send_signal(signal.SIGUSR1)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == PREEMPTED_EXIT_CODE, output[-4000:]
    stopped = max(logged_train_steps(run_dir))
    assert 1 < stopped < 6 and "pre-empted by SIGUSR1: checkpoint" in output
    assert complete_checkpoints(run_dir)[-1].name == f"step_{stopped:07d}"

    launch(config, "--resume", "auto")
    expected, resumed = read_metrics(run_a.run_dir), read_metrics(run_dir)
    for step in range(stopped + 1, 7):
        assert resumed[step]["loss"] == pytest.approx(expected[step]["loss"], rel=1e-6), step


def run_single(config: Path, *extra: str) -> str:
    """The entry point without a launcher: a world of one (ZeRO-3 on one process); returns its output."""
    env = ENV | {"MASTER_PORT": str(free_port())}
    result = subprocess.run([sys.executable, str(REPO / "radllm" / "train.py"), "--config", str(config), "--no-progress", *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_held_out_text_perplexity_at_eval_steps_equals_radllm_perplexity_on_the_export(run_a, tmp_path):
    """`logging.text_perplexity_studies` larger than the val split scores all of it: the trainer's
    value (ZeRO-3, rows split over 2 ranks) is `radllm perplexity --split val` of the export."""
    out = tmp_path / "ppl.json"
    assert cli_main(["perplexity", "--model", run_a.export_path, "--shards", run_a.data.shards, "--split", run_a.data.eval_split,
                     "--out", str(out), "--device", "cpu", "--dtype", "float32", "--no-progress"]) == 0
    expected = json.loads(out.read_text())
    evals = read_metrics(run_a.run_dir, kind="eval")
    logged = evals[6]["text_perplexity"]  # step 6 is the exported weights
    assert (logged["n_studies"], logged["n_tokens"]) == (expected["n_studies"], expected["n_tokens"]) and logged["n_tokens"] > 0
    assert logged["nll"] == pytest.approx(expected["nll"], rel=1e-5) and logged["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-5)
    assert evals[3]["text_perplexity"]["nll"] != pytest.approx(logged["nll"], rel=1e-4)  # measured anew at each evaluation


def test_two_rank_checkpoint_resumes_on_one_rank_and_continues_run_a(run_a, artifacts, tmp_path):
    """A requeued job that gets fewer ranks: run A's 2-rank ZeRO-3 checkpoint of step 4, resumed by a
    world of one. The checkpoint is converted to DeepSpeed's universal form, the one rank trains on
    both data streams (grad_accum micro-batches of each), and steps 5-6 repeat run A's losses and
    L2 distances: same global batch, same rows, only the order of float sums differs."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(Path(run_a.run_dir) / "checkpoints" / "step_0000004", run_dir / "checkpoints" / "step_0000004")
    config = write_train_config(tmp_path / "one.yaml", artifacts, run_dir, logging={"sample_reports": 2, "sample_max_new_tokens": 12}, tasks=CURRICULUM)
    output = run_single(config, "--resume", "auto")
    assert "universal checkpoint" in output and (run_dir / "checkpoints" / "step_0000004" / "universal" / "zero").is_dir()
    expected, resumed = read_metrics(run_a.run_dir), read_metrics(run_dir)
    assert sorted(resumed) == [5, 6]
    for step in (5, 6):
        assert resumed[step]["loss"] == pytest.approx(expected[step]["loss"], rel=1e-6), step
        assert resumed[step]["anchor_sq_dist"] == pytest.approx(expected[step]["anchor_sq_dist"], rel=1e-6), step
    saved = json.loads((run_dir / "checkpoints" / "step_0000006" / "trainer_rank0.json").read_text())
    assert (saved["world_size"], saved["streams"], sorted(saved["data"]["streams"])) == (1, 2, ["0", "1"])


def old_row_distance(weights: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> float:
    """Naive ‖θ − θ_original‖² over every tensor, new vocabulary rows left out."""
    total = 0.0
    for name, value in original.items():
        total += float(((weights[name][: value.shape[0]] - value) ** 2).sum())
    return total


def test_stage2_anchors_to_the_original_model_and_larger_lambda_stays_closer(run_a, artifacts, tmp_path):
    original = load_file(str(artifacts.pretrained / "model.safetensors"))
    stage1 = load_file(str(Path(run_a.export_path) / "model.safetensors"))
    common = {"model": {"init": run_a.export_path, "dtype": "float32", "attn_implementation": "sdpa"},
              "tasks": {"stage": 2, "weights": {"report_generation": 1.0, "image_generation": 1.0, "vqa": 1.0, "text_lm": 0.0}},
              "schedule": {"max_steps": 3, "log_every": 1, "eval_every": 100, "save_every": 100}, "data__eval_split": None}
    exports = {}
    for lam in (0.0, 150.0):
        run_dir = tmp_path / f"lam{lam:g}"
        config = write_train_config(tmp_path / f"s2-{lam:g}.yaml", artifacts, run_dir, anchor={"lambda_reg": lam, "pretrained": str(artifacts.pretrained)}, **common)
        run_single(config)
        exports[lam] = load_file(str(run_dir / "model" / "model.safetensors"))
        if lam:
            first = read_metrics(run_dir)[1]
            # θ₀ is the original model, not the stage-1 init: the first distance is stage-1's drift.
            assert first["anchor_sq_dist"] == pytest.approx(old_row_distance(stage1, original), rel=1e-5)
            assert first["anchor_sq_dist"] > 0
    assert old_row_distance(exports[150.0], original) < 0.9 * old_row_distance(exports[0.0], original)


def test_keep_best_keeps_the_best_evaluations_checkpoint_across_a_resume_and_exports_it(artifacts, tmp_path):
    """The best evaluation (argmax over metrics.jsonl, read here) keeps its checkpoint past rotation and a resume.

    The "best" is the *highest* eval loss here (mode max), so that it is an early step while
    training lowers the loss: the kept checkpoint is then not the latest one.
    """
    schedule = {"max_steps": 3, "log_every": 1, "eval_every": 1, "save_every": 100, "keep_checkpoints": 1,
                "keep_best": "loss", "keep_best_mode": "max"}
    config = write_train_config(tmp_path / "best.yaml", artifacts, tmp_path / "run", schedule=schedule)
    launch(config)
    launch(config, "--resume", "auto", "--set", "schedule.max_steps=6")
    evals = {step: record["loss"] for step, record in read_metrics(tmp_path / "run", kind="eval").items()}
    assert sorted(evals) == [1, 2, 3, 4, 5, 6]
    best_step = max(evals, key=evals.get)
    assert best_step < 6, evals
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best == {"checkpoint": f"step_{best_step:07d}", "step": best_step, "metric": "loss", "mode": "max",
                    "value": pytest.approx(evals[best_step])}
    link = tmp_path / "run" / "checkpoints" / "best"
    assert link.is_symlink() and os.readlink(link) == f"step_{best_step:07d}"
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert kept == sorted({f"step_{best_step:07d}", "step_0000006"}), (kept, evals)
    out = tmp_path / "best_model"
    assert cli_main(["export", "--checkpoint", str(link), "--out", str(out)]) == 0
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size > 0


def test_keep_best_is_refused_for_a_key_no_evaluation_logs(artifacts, tmp_path):
    for schedule, message in (({"keep_best": "samples/f1_micro_present"}, "logging.sample_reports > 0"),
                              ({"keep_best": "loss", "keep_best_mode": "largest"}, "keep_best_mode = 'largest'")):
        config = write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run", schedule=schedule)
        with pytest.raises(RadllmError, match=message):
            load_config(TrainConfig, config).validate()
