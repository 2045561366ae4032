"""Tiny artifacts for trainer tests: tokenizer + shards from phantoms, a "pretrained" Llama, run configs.

    from training_fixtures import make_training_artifacts, write_train_config
    art = make_training_artifacts(tmp_path)              # tokenizer, shards (train/val), pretrained/
    cfg = write_train_config(tmp_path / "run.yaml", art, run_dir=tmp_path / "run", lambda_reg=0.5)

The pretrained model has exactly the base tokenizer's text vocabulary (as a real LLM would), so
the trainer must add the visual rows; everything is a pure function of the seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tokenizer_fixtures import make_visual_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.data.tokenize import tokenize_shards, write_index
from radllm.phantoms import generate_phantoms
from radllm.vocab import load_tokenizer

REPO = Path(__file__).resolve().parents[1]


@dataclass
class TrainingArtifacts:
    tokenizer: Path
    shards: Path
    pretrained: Path
    text_vocab: int


def make_pretrained(directory: Path, vocab_size: int, bos: int | None, eos: int | None, seed: int = 0, hidden: int = 32, tie: bool = False) -> Path:
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=bos,
        eos_token_id=eos, tie_word_embeddings=tie, initializer_range=0.2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    return directory


def make_training_artifacts(root: str | Path, n_studies: int = 30, hidden: int = 32) -> TrainingArtifacts:
    root = Path(root)
    tok_dir, vq_dir = make_visual_tokenizer(root / "vocab", family="llama", codebook_size=16, image_size=32)
    manifest = generate_phantoms(root / "phantoms", n=n_studies, size=64, seed=0, progress=False)
    shards = root / "shards"
    tokenize_shards(manifest, vq_dir, tok_dir, shards, shard_size=4, batch_size=8, num_workers=0, progress=False)
    write_index(manifest, vq_dir, tok_dir, shards, shard_size=4)
    tokenizer, spec = load_tokenizer(tok_dir)
    pretrained = make_pretrained(root / "pretrained", spec.text_vocab_size, tokenizer.bos_token_id, tokenizer.eos_token_id, hidden=hidden)
    return TrainingArtifacts(tok_dir, shards, pretrained, spec.text_vocab_size)


def train_config_dict(art: TrainingArtifacts, run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """A tiny stage-1 config; `overrides` are dotted keys (`optim.lr=...` as `optim__lr`) or top-level sections."""
    config: dict[str, Any] = {
        "run_dir": str(run_dir),
        "tokenizer": str(art.tokenizer),
        "deepspeed": "ds_configs/zero3.json",
        "model": {"init": str(art.pretrained), "dtype": "float32", "attn_implementation": "sdpa", "loss_chunk_tokens": 100},
        "data": {"shards": str(art.shards), "seq_len": 384, "studies_per_batch": 4, "num_workers": 0, "shuffle_buffer": 8, "eval_rows": 2},
        "tasks": {"stage": 1, "weights": {"report_generation": 1.0, "image_generation": 1.0, "vqa": 0.0, "text_lm": 0.0}},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.01, "micro_batch_size": 2, "grad_accum": 2, "grad_clip": 1.0},
        "anchor": {"lambda_reg": 50.0},
        "schedule": {"max_steps": 6, "log_every": 1, "eval_every": 3, "save_every": 2, "keep_checkpoints": 2},
        "seed": 0,
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            config.setdefault(section, {})[name] = value
        else:
            config[section] = value
    return config


def write_train_config(path: str | Path, art: TrainingArtifacts, run_dir: str | Path, **overrides: Any) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(train_config_dict(art, run_dir, **overrides)))
    return path


def logged_train_steps(run_dir: str | Path) -> set[int]:
    """Train steps in a run's metrics.jsonl so far (a line being written is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    steps = set()
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "train":
            steps.add(record["step"])
    return steps
