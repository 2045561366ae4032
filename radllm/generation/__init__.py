"""Offline batch generation: reports from images, images from reports (with CFG), VQA answers.

- `model`: load an exported model directory and check it against its tokenizer, spec and VQ-GAN.
- `inputs` / `views`: studies from a manifest, shards, an image folder or report text; prompt
  codes taken from shards or VQ-encoded on the fly.
- `decode` / `beam` / `sampling` / `constraints`: the batched KV-cache decoding loops (greedy,
  sampled, beam, guided image decoding, answer scoring) and the vocabulary masks they apply.
- `reports` / `images` / `vqa`: prompts (the training-time builders of `radllm.tasks`) and records.
- `plan` / `records` / `job`: units split by rank, resumable per-rank JSONL parts, the merge.
"""

from radllm.generation.job import TASKS, GenerateRequest, Job, prepare_job
from radllm.generation.model import Generator, load_generator
from radllm.generation.sampling import DecodingConfig

__all__ = ["TASKS", "DecodingConfig", "GenerateRequest", "Generator", "Job", "load_generator", "prepare_job"]
