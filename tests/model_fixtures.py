"""Tiny exported-model directories (what `radllm export` writes) and study sets, for tests.

    from model_fixtures import make_model_dir, make_study_set
    model_dir, vq_dir = make_model_dir(tmp_path)             # HF dir + tokenizer + radllm.json
    manifest = make_study_set(tmp_path / "data", n=6)        # 32-px PNGs, reports, labels

The model is a randomly initialised `LlamaForCausalLM` built from a config (nothing downloaded)
with the embedding rows of the visual vocab spec's padded vocabulary. `initializer_range` is large
on purpose: with the default 0.02 every logit is close to every other, so two correct decoders
could disagree on a near-tie through float rounding alone; spread-out logits make token-by-token
equality tests meaningful. Everything is a pure function of `seed`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from tokenizer_fixtures import CORPUS, make_visual_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.imaging import save_png
from radllm.labels import OBSERVATIONS
from radllm.manifest import ImageRef, Report, Study, write_manifest
from radllm.vocab.load import load_tokenizer
from radllm.vocab_spec import SPEC_FILENAME


def make_model_dir(
    tmp_path: str | Path,
    family: str = "llama",
    codebook_size: int = 16,
    image_size: int = 32,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    initializer_range: float = 0.5,
    name: str = "model",
) -> tuple[Path, Path]:
    """Write a tiny exported model directory under `tmp_path`; returns (model_dir, vq_dir).

    The directory holds `config.json`, `model.safetensors`, the extended tokenizer's files and
    `radllm.json`, exactly the layout generation and evaluation read. The VQ dir (32 px, 8x8
    grid by default) is the one the spec was built for.
    """
    tmp_path = Path(tmp_path)
    tok_dir, vq_dir = make_visual_tokenizer(tmp_path / f"{name}-vocab", family=family, codebook_size=codebook_size, image_size=image_size)
    tokenizer, spec = load_tokenizer(tok_dir)
    config = LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=1024,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model_dir = tmp_path / name
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    shutil.copy(tok_dir / SPEC_FILENAME, model_dir / SPEC_FILENAME)
    return model_dir, vq_dir


def make_study_set(root: str | Path, n: int = 6, size: int = 32, seed: int = 0, views: tuple[str, ...] = ("PA",)) -> Path:
    """PNG images (bright ellipses on dark), report text from `CORPUS` and labels; returns the manifest path.

    Study `i` has one image per entry of `views`, report `CORPUS[i % len(CORPUS)]` and a mix of
    1 / 0 / -1 / blank labels, split "test".
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    (root / "images").mkdir(parents=True, exist_ok=True)
    label_values = (1, 0, -1, None)
    studies = []
    for i in range(n):
        refs = []
        for v, view in enumerate(views):
            image = 0.1 + 0.05 * rng.standard_normal((size, size))
            cy, cx, ry, rx = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.3)
            image += 0.6 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
            rel = f"images/study{i:03d}_{v}.png"
            save_png(np.clip(image, 0, 1).astype(np.float32), root / rel)
            refs.append(ImageRef(rel, view))
        labels = {name: label_values[(i + j) % len(label_values)] for j, name in enumerate(OBSERVATIONS)}
        text = CORPUS[i % len(CORPUS)]
        studies.append(Study(study_id=f"study{i:03d}", images=refs, report=Report(text=text), labels=labels, split="test"))
    write_manifest(root / "manifest.jsonl", studies)
    return root / "manifest.jsonl"
