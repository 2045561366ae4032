"""Tiny labelled image sets and configs for the VQ training/CLI tests (CPU, 32 px, seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from radllm.imaging import save_png
from radllm.manifest import ImageRef, Report, Study, write_manifest


def write_image_set(root: Path, n_train: int = 24, n_test: int = 6, size: int = 32, seed: int = 0) -> Path:
    """PNG images of bright ellipses on dark backgrounds (chest-like blobs) plus a manifest."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    studies = []
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        image = 0.1 + 0.05 * rng.standard_normal((size, size))
        for _ in range(2):
            cy, cx, ry, rx = rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.2)
            image += 0.6 * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
        rel = f"images/img_{i:03d}.png"
        save_png(np.clip(image, 0, 1).astype(np.float32), root / rel)
        split = "train" if i < n_train else "test"
        studies.append(Study(study_id=f"s{i:03d}", images=[ImageRef(rel, "PA")], report=Report(text="x"), split=split))
    write_manifest(root / "manifest.jsonl", studies)
    return root / "manifest.jsonl"


def tiny_train_config(manifest: Path, output_dir: Path, **sections: dict) -> Path:
    """A 32-px, 4-step VQ run config written next to `output_dir`; `sections` update its parts."""
    config = {
        "model": {"image_size": 32, "base_channels": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 16, "codebook_size": 32, "codebook_dim": 4},
        "loss": {"disc_start_step": 1, "disc_channels": 8, "disc_layers": 2},
        "data": {"manifest": str(manifest), "eval_split": "test", "eval_images": 4, "num_workers": 0},
        "optim": {"batch_size": 4, "warmup_steps": 2},
        "schedule": {"max_steps": 4, "log_every": 1, "eval_every": 2, "save_every": 2, "revive_every": 2, "keep_checkpoints": 5},
        "output_dir": str(output_dir),
        "torch_threads": 1,
    }
    for key, value in sections.items():
        config[key] = config[key] | value if isinstance(config.get(key), dict) else value
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
