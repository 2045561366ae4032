"""radllm's trainer vs the Hugging Face `Trainer`: real tokens/s on the same model, examples and ZeRO-3 ranks.

    .venv/bin/python benchmarks/trainer_vs_hf.py                   # CPU, 2 ranks: about 4 min on 2 busy cores
    .venv/bin/python benchmarks/trainer_vs_hf.py --steps 40 --rounds 3 --distributions mimic --seq-len 1024

Both trainers run through the real `deepspeed` launcher with 2 ranks (`--num_accelerators 2`,
`DS_ACCELERATOR=cpu` unless set, one BLAS thread per rank) and `ds_configs/zero3.json`, whose
"auto" values each trainer fills itself. They start from the same tiny "pretrained" Llama (a
LlamaConfig saved with save_pretrained; nothing is downloaded), in fp32, each with the attention
its users get by default (radllm `auto`: per-sample causal SDPA over its packed rows on CPU,
`radllm_varlen_sdpa`; HF: SDPA over padded batches), and train on the same tokenized examples:

- Studies: phantom studies as `radllm phantoms --seed 0` draws them (findings, then the report
  from the study's own rng; the image is not rendered), with random 16x16 code grids of a
  1024-code VQ in place of VQ-encoded images (one block = 258 tokens, as in benchmarks/packing.py).
  Text is tokenized by a SentencePiece tokenizer trained on those reports (vocabulary 1000, as
  `make demo`) and extended with the visual vocabulary.
- Lengths: "phantom": each study's own report, one PA view. "MIMIC-like": the report-length and
  view distribution of benchmarks/packing.py's `mimic_like` (words ~ lognormal(median 60, σ 0.6)
  clipped to [5, 500], 1.3 tokens a word; 1/2/3 views with probability 0.6/0.35/0.05), the
  report's ids cut from consecutive phantom reports.
- Examples: `TaskMixer` with the default stage-1 mix (report generation / image generation 50/50,
  10% of image examples unconditional). Each study's examples are a pure function of (seed, epoch,
  study), so the epoch-0 examples radllm builds from the shards are the list HF gets; each trainer
  draws from that pool in its own shuffled order (with the defaults no run reaches the end of an
  epoch, so neither sees a study twice).

Batches are matched in examples per optimizer step: radllm trains `micro_batch_size` 1 packed row
of `--seq-len` tokens per rank per step (studies packed 32 at a time, `data.studies_per_batch`);
HF trains `per_device_train_batch_size` N examples per rank per step, padded to the longest in the
batch (`DataCollatorForSeq2Seq`, labels -100 on padding), with N = examples / rows of that same
packing, rounded. Both use grad_accum 1, AdamW (lr 1e-3, β2 0.95, no weight decay), 2 warmup steps
then cosine decay, gradient clipping 1.0, and read data in the training process (radllm
`data.num_workers=0`, HF's default `dataloader_num_workers=0`). radllm runs without evaluation,
samples, grounding or L2 anchor (HF has none of them) and with its defaults otherwise (chunked loss).

Measured per run, after dropping the first `--warmup` steps: real (non-pad) tokens of both ranks
per second of rank 0's step time (radllm: `tokens` and `step_time` of metrics.jsonl; HF: the
attention-mask sum of each rank's batches, and the time between consecutive `on_step_end`
callbacks on rank 0), the median step time, and each rank's peak RSS (VmHWM of the rank process,
read from /proc while the run lasts, the same way for both). Runs alternate the trainer that goes
first between rounds and length distributions, so drift in machine load hits both alike.
With a model this small attention is a large share of a step, so the figures depend on
--seq-len and --hidden: radllm's packed rows cost the sum of their samples' squared lengths (a
dense block-diagonal mask, `model.attn_implementation: sdpa`, costs seq_len² per row: 0.72-1.14x
of HF on MIMIC-like lengths where `auto` gives 1.45x). The HF side needs accelerate (a
dependency of peft).

Printed per length distribution: tokens/s of each and the ratio radllm/HF, median step time, real
tokens per step, the real fraction of the token positions computed (rows of seq_len vs batches
padded to their longest), the mean training loss of the runs (a check that both train the same
model on the same data alike), and peak RSS per rank. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the launcher runs this file as a script (HF worker): import this checkout's radllm

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from accelerate import PartialState  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer, DataCollatorForSeq2Seq, LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments,
)

from radllm.cli import exit_now  # noqa: E402
from radllm.data.sample import TokenizedStudy  # noqa: E402
from radllm.data.shards import write_split_shards  # noqa: E402
from radllm.packing import pack_examples  # noqa: E402
from radllm.phantoms import sample_study, write_report  # noqa: E402
from radllm.phantoms.dataset import study_rng  # noqa: E402
from radllm.tasks import TaskMixConfig, TaskMixer  # noqa: E402
from radllm.training.comm_op import prepare_op_builds, release_shm_segment  # noqa: E402
from radllm.training.run_log import read_metrics  # noqa: E402
from radllm.vocab import load_tokenizer  # noqa: E402
from radllm.vocab.codec import decode_report, encode_report  # noqa: E402
from radllm.vocab.extend import extend_tokenizer, save_tokenizer_dir  # noqa: E402
from radllm.vocab.sentencepiece_tokenizer import sentencepiece_to_hf, train_sentencepiece  # noqa: E402

DS_CONFIG = "ds_configs/zero3.json"
GRID, CODEBOOK, TEXT_VOCAB = 16, 1024, 1000
VIEWS = ("PA", "LATERAL", "AP")
STUDIES_PER_BATCH = 32  # radllm's data.studies_per_batch default, also used to size the HF batch
OPTIM = {"lr": 1e-3, "warmup_steps": 2, "beta2": 0.95, "grad_clip": 1.0}
TRAINERS = ("radllm", "hf")


@dataclass
class Pool:
    """The examples of one length distribution, and the HF batch that matches a packed row."""

    examples: int
    median: int
    p99: int
    longest: int
    per_row: float  # examples per packed row of seq_len
    hf_batch: int  # examples per rank per HF step: per_row rounded


@dataclass
class Run:
    """One trainer's run on one length distribution: per-step figures and peak RSS per rank (MiB)."""

    tokens: list[int]  # real tokens of both ranks, per measured step
    slots: list[int]  # token positions (real + padding) of both ranks, per measured step
    step_times: list[float]  # rank 0's seconds per measured step
    loss: float  # mean training loss over all steps of the run
    peak_rss: dict[int, float]


@dataclass
class Results:
    """All rounds of one trainer on one distribution."""

    tokens: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak_rss: dict[int, float] = field(default_factory=dict)

    def add(self, run: Run) -> None:
        self.tokens += run.tokens
        self.slots += run.slots
        self.step_times += run.step_times
        self.losses.append(run.loss)
        for rank, mib in run.peak_rss.items():
            self.peak_rss[rank] = max(mib, self.peak_rss.get(rank, 0.0))

    @property
    def tokens_per_s(self) -> float:
        return sum(self.tokens) / sum(self.step_times)


def phantom_reports(n: int, seed: int = 0) -> list[str]:
    """Report texts of phantom studies 0..n-1 of `radllm phantoms --seed seed` (drawn without rendering)."""
    reports = []
    for index in range(n):
        rng = study_rng(seed, index)  # make_study's draws: study spec, then report wording
        reports.append(write_report(sample_study(rng).findings, rng).text)
    return reports


def build_tokenizer(texts: Sequence[str], out_dir: Path) -> None:
    """SentencePiece text tokenizer trained on `texts`, extended with a GRID x GRID, CODEBOOK-code visual vocabulary."""
    tokenizer = sentencepiece_to_hf(train_sentencepiece(texts, TEXT_VOCAB))
    # No VQ-GAN: codes are random, so the spec records no VQ or base-tokenizer hash.
    spec = extend_tokenizer(tokenizer, codebook_size=CODEBOOK, grid_height=GRID, grid_width=GRID, image_size=GRID * 16, vq_hash="", tokenizer_hash="")
    save_tokenizer_dir(tokenizer, spec, out_dir)


def build_model(tok_dir: Path, out_dir: Path, hidden: int, layers: int) -> None:
    """A randomly initialised Llama with the tokenizer's full vocabulary, saved as a "pretrained" HF directory."""
    tokenizer, spec = load_tokenizer(tok_dir)
    config = LlamaConfig(
        vocab_size=spec.vocab_size, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 32, num_key_value_heads=hidden // 32, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out_dir)


def report_lengths(distribution: str, own: Sequence[int], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Report tokens and view count of each study: the phantom report's own length and one view, or MIMIC-like."""
    n = len(own)
    if distribution == "phantom":
        return list(own), [1] * n
    words = np.clip(np.exp(rng.normal(np.log(60.0), 0.6, size=n)), 5, 500)  # benchmarks/packing.py's mimic_like
    views = rng.choice([1, 2, 3], size=n, p=[0.6, 0.35, 0.05])
    return np.round(1.3 * words).astype(int).tolist(), views.tolist()


def build_studies(distribution: str, reports: Sequence[str], tok_dir: Path, seed: int) -> list[TokenizedStudy]:
    """One study per phantom report, its report ids and views following `distribution`, random codes."""
    tokenizer, spec = load_tokenizer(tok_dir)
    encoded = [encode_report(tokenizer, text) for text in reports]
    stream = [token for ids in encoded for token in ids]  # MIMIC-like reports are cut from consecutive phantom reports
    rng = np.random.default_rng(seed)
    lengths, views = report_lengths(distribution, [len(ids) for ids in encoded], rng)
    studies, start = [], 0
    for index, (length, n_views) in enumerate(zip(lengths, views)):
        if distribution == "phantom":
            ids = encoded[index]
        else:
            ids = [stream[(start + k) % len(stream)] for k in range(length)]
            start += length
        key = f"s{index:06d}"
        studies.append(TokenizedStudy(
            key=key, study_id=key, split="train",
            image_codes=[rng.integers(0, spec.codebook_size, (GRID, GRID)).astype(np.int16) for _ in range(n_views)],
            views=list(VIEWS[:n_views]), report=decode_report(tokenizer, ids), report_ids=np.asarray(ids, dtype=np.int32),
        ))
    return studies


def write_data(studies: Sequence[TokenizedStudy], tok_dir: Path, out_dir: Path, seq_len: int, seed: int) -> Pool:
    """Shards for radllm, and the same epoch-0 examples as JSON for HF."""
    tokenizer, spec = load_tokenizer(tok_dir)
    write_split_shards(out_dir / "shards", {"train": [studies[i : i + 50] for i in range(0, len(studies), 50)]}, spec)
    mixer = TaskMixer(tokenizer, spec, TaskMixConfig(), seed)  # radllm's default task mix (the run config leaves `tasks` out)
    examples, rows = [], 0
    for start in range(0, len(studies), STUDIES_PER_BATCH):  # packed as radllm packs them: one loader batch at a time
        batch = list(mixer.examples(studies[start : start + STUDIES_PER_BATCH]))
        rows += len(pack_examples(batch, seq_len, tokenizer.pad_token_id))
        examples += batch
    (out_dir / "examples.json").write_text(json.dumps([{"input_ids": e.input_ids, "labels": e.labels} for e in examples]))
    lengths = [len(e.input_ids) for e in examples]
    per_row = len(examples) / rows
    return Pool(len(examples), int(np.median(lengths)), int(np.percentile(lengths, 99)), max(lengths), per_row, max(1, round(per_row)))


def rank_processes(root: int, script: str) -> dict[int, int]:
    """pid of each rank (by its RANK variable) among the descendants of `root` running `script`."""
    ranks = {}
    for process in psutil.Process(root).children(recursive=True):
        try:
            if any(arg.endswith(script) for arg in process.cmdline()) and "RANK" in (env := process.environ()):
                ranks[int(env["RANK"])] = process.pid
        except psutil.Error:  # exited between listing and reading
            continue
    return ranks


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def launch(script: str, script_args: list[str], port: int, log_path: Path) -> dict[int, float]:
    """Run `script` on 2 ranks through the deepspeed launcher; returns each rank's peak RSS in MiB.

    Raises:
        RuntimeError: the launch failed (with the end of its log).
    """
    command = [str(Path(sys.executable).with_name("deepspeed")), "--num_accelerators", "2", "--master_port", str(port), script, *script_args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu"),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    peaks: dict[int, float] = {}
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:
            for rank, pid in rank_processes(process.pid, script).items():
                if (mib := peak_rss_mib(pid)) is not None:
                    peaks[rank] = max(mib, peaks.get(rank, 0.0))  # VmHWM only grows: the last reading is the peak so far
            time.sleep(0.5)
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-40:])
        raise RuntimeError(f"{script} exited {process.returncode}; end of its log:\n{tail}")
    return peaks


def run_radllm(work: Path, data: Path, run_dir: Path, args: argparse.Namespace, port: int) -> Run:
    """radllm/train.py on the distribution's shards; figures from its metrics.jsonl."""
    config = {
        "run_dir": str(run_dir), "tokenizer": str(work / "tokenizer"), "deepspeed": DS_CONFIG, "seed": args.seed,
        "model": {"init": str(work / "model"), "dtype": "float32", "attn_implementation": "auto"},
        "data": {"shards": str(data / "shards"), "eval_split": None, "seq_len": args.seq_len, "num_workers": 0,
                 "studies_per_batch": STUDIES_PER_BATCH},
        "optim": {**OPTIM, "micro_batch_size": 1, "grad_accum": 1},
        "schedule": {"max_steps": args.steps, "log_every": args.steps, "save_every": args.steps, "keep_checkpoints": 1},
        "logging": {"sample_reports": 0, "grounding_studies": 0},
    }
    config_path = run_dir.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(config))
    peaks = launch("radllm/train.py", ["--no-progress", "--config", str(config_path)], port, run_dir.with_suffix(".log"))
    records = [r for _, r in sorted(read_metrics(run_dir).items())]
    measured = records[args.warmup :]
    slots = 2 * args.seq_len  # one row per rank
    return Run([r["tokens"] for r in measured], [slots] * len(measured), [r["step_time"] for r in measured],
               statistics.mean(r["loss"] for r in records), peaks)


def run_hf(work: Path, data: Path, run_dir: Path, args: argparse.Namespace, hf_batch: int, port: int) -> Run:
    """This file's HF worker on the distribution's examples; figures from the per-rank step files."""
    job = {"model": str(work / "model"), "tokenizer": str(work / "tokenizer"), "examples": str(data / "examples.json"),
           "out": str(run_dir), "batch": hf_batch, "steps": args.steps, "seed": args.seed}
    run_dir.mkdir(parents=True)
    job_path = run_dir / "job.json"
    job_path.write_text(json.dumps(job))
    script = str(Path(__file__).resolve().relative_to(REPO))
    peaks = launch(script, ["--hf-worker", str(job_path)], port, run_dir.with_suffix(".log"))
    per_rank = [json.loads(path.read_text()) for path in sorted(run_dir.glob("rank*.json"))]
    tokens, slots = ([sum(steps) for steps in zip(*(r[key] for r in per_rank))] for key in ("tokens", "slots"))
    rank0 = next(r for r in per_rank if r["rank"] == 0)
    return Run(tokens[args.warmup :], slots[args.warmup :], rank0["step_times"][args.warmup :], rank0["loss"], peaks)


class StepEnds(TrainerCallback):
    """When HF training began and each optimizer step ended."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_begin(self, *_: Any, **__: Any) -> None:
        self.times = [time.perf_counter()]

    def on_step_end(self, *_: Any, **__: Any) -> None:
        self.times.append(time.perf_counter())


def hf_worker(job_path: str) -> None:
    """One rank of the HF `Trainer` run described by the job file (started by the launcher)."""
    job = json.loads(Path(job_path).read_text())
    prepare_op_builds()  # the CPU comm op radllm built, and no stale build lock (radllm.training.comm_op)
    # On a machine without an accelerator, accelerate (1.16) initialises DeepSpeed's process group
    # but finds no backend and counts 1 process, so the Trainer fills "auto" batch sizes for a
    # world of 1 and DeepSpeed refuses them. Naming gloo in a pre-configured state fixes the count.
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    state = PartialState(backend="gloo")
    torch.distributed.barrier()  # every rank has mapped the comm op's segments: their names can go
    release_shm_segment(state.process_index)
    args = TrainingArguments(  # before from_pretrained, so ZeRO-3 partitions the model as it loads
        output_dir=job["out"], deepspeed=str(REPO / DS_CONFIG), per_device_train_batch_size=job["batch"], gradient_accumulation_steps=1,
        max_steps=job["steps"], learning_rate=OPTIM["lr"], warmup_steps=OPTIM["warmup_steps"], lr_scheduler_type="cosine",
        adam_beta2=OPTIM["beta2"], weight_decay=0.0, max_grad_norm=OPTIM["grad_clip"], save_strategy="no", report_to="none",
        logging_steps=job["steps"], disable_tqdm=True, seed=job["seed"], remove_unused_columns=False,
        accelerator_config={"use_configured_state": True},
    )
    tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"])
    model = LlamaForCausalLM.from_pretrained(job["model"], dtype=torch.float32, attn_implementation="sdpa")
    pad_to_longest = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    real_tokens: list[int] = []  # per batch, in the order this rank's loader makes them (= step order, grad_accum 1)
    slots: list[int] = []

    def collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = pad_to_longest(features)
        real_tokens.append(int(batch["attention_mask"].sum()))
        slots.append(batch["attention_mask"].numel())
        return batch

    ends = StepEnds()
    examples = json.loads(Path(job["examples"]).read_text())
    output = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[ends]).train()
    steps = [b - a for a, b in zip(ends.times, ends.times[1:])]
    record = {"rank": state.process_index, "step_times": steps, "tokens": real_tokens[: len(steps)], "slots": slots[: len(steps)],
              "loss": output.training_loss}
    Path(job["out"], f"rank{state.process_index}.json").write_text(json.dumps(record))


def compare(distribution: str, index: int, work: Path, reports: Sequence[str], args: argparse.Namespace) -> tuple[Pool, dict[str, Results]]:
    """All rounds of both trainers on one length distribution (the `index`-th), the first trainer alternating."""
    data = work / distribution
    pool = write_data(build_studies(distribution, reports, work / "tokenizer", args.seed), work / "tokenizer", data, args.seq_len, args.seed)
    results = {trainer: Results() for trainer in TRAINERS}
    for round_ in range(args.rounds):
        order = TRAINERS if (round_ + index) % 2 == 0 else TRAINERS[::-1]
        for position, trainer in enumerate(order):
            run_dir = data / f"{trainer}_{round_}"
            port = args.port + 2 * (index * args.rounds + round_) + position  # a fresh rendezvous port per launch
            run = run_radllm(work, data, run_dir, args, port) if trainer == "radllm" else run_hf(work, data, run_dir, args, pool.hf_batch, port)
            results[trainer].add(run)
    return pool, results


def print_comparison(name: str, pool: Pool, results: dict[str, Results], steps_per_run: int) -> None:
    radllm, hf = results["radllm"], results["hf"]
    print(f"\n{name}: {pool.examples} examples, length median {pool.median}, p99 {pool.p99}, max {pool.longest}; "
          f"{pool.per_row:.2f} examples per packed row -> HF batch {pool.hf_batch} per rank")
    print(f"  {'trainer':<8} {'real tok/s':>10} {'median step s':>14} {'real tok/step':>14} {'real/slots':>10} {'mean loss':>10}  peak RSS per rank (MiB)")
    for label, r in (("radllm", radllm), ("HF", hf)):
        rss = ", ".join(f"rank {k}: {v:.0f}" for k, v in sorted(r.peak_rss.items()))
        print(f"  {label:<8} {r.tokens_per_s:>10.0f} {statistics.median(r.step_times):>14.3f} {statistics.mean(r.tokens):>14.0f} "
              f"{sum(r.tokens) / sum(r.slots):>10.3f} {statistics.mean(r.losses):>10.3f}  {rss}")
    print(f"  ratio radllm/HF real tokens/s: {radllm.tokens_per_s / hf.tokens_per_s:.2f}  "
          f"({len(radllm.step_times)} and {len(hf.step_times)} steps measured, {steps_per_run} per run)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="first steps of each run left out of the figures (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each trainer per distribution (default 1)")
    parser.add_argument("--seq-len", type=int, default=2048, help="radllm's packed row length (default 2048)")
    parser.add_argument("--studies", type=int, default=1000, help="studies per distribution (default 1000)")
    parser.add_argument("--hidden", type=int, default=128, help="Llama hidden size (default 128; 32 per attention head)")
    parser.add_argument("--layers", type=int, default=4, help="Llama layers (default 4)")
    parser.add_argument("--distributions", nargs="+", choices=("phantom", "mimic"), default=["phantom", "mimic"])
    parser.add_argument("--port", type=int, default=29661, help="first rendezvous port; each launch takes the next one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hf-worker", metavar="JOB", help=argparse.SUPPRESS)  # one rank of an HF run (started by the launcher)
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # passed by the deepspeed launcher
    args = parser.parse_args()
    if not args.hf_worker and args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    return args


def main() -> None:
    args = parse_args()
    if args.hf_worker:
        hf_worker(args.hf_worker)
        exit_now(0)  # as radllm's trainer does: a process group's C++ teardown can abort a finished rank
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        reports = phantom_reports(args.studies, args.seed)
        build_tokenizer(reports, work / "tokenizer")
        build_model(work / "tokenizer", work / "model", args.hidden, args.layers)
        print(f"Llama hidden {args.hidden}, {args.layers} layers; 2 ranks, ZeRO-3 ({DS_CONFIG}); {args.steps} steps per run, "
              f"first {args.warmup} dropped; {args.rounds} round(s)")
        for index, distribution in enumerate(args.distributions):
            pool, results = compare(distribution, index, work, reports, args)
            name = "phantom lengths" if distribution == "phantom" else "MIMIC-like lengths (benchmarks/packing.py)"
            print_comparison(name, pool, results, args.steps)


if __name__ == "__main__":
    main()
