"""How the next token is chosen from logits: decoding settings, filtering and seeded draws.

Seeding does not depend on batch composition: every sample owns a `torch.Generator` seeded by
(run seed, sample key), and each decoding step draws one uniform vector per sample from its own
generator (Gumbel-max). So a study gets the same random stream whether it is decoded alone, in a
batch of 32, on rank 0 or on rank 3, or after a resume. What can still differ across batch
compositions is the float rounding of the logits themselves (different padding, different matmul
shapes), which flips a draw only when it falls within rounding error of a category boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from radllm.errors import RadllmError

STRATEGIES = ("greedy", "sample", "beam")


@dataclass(frozen=True)
class DecodingConfig:
    """Decoding settings of one run (written into every report record as "decoding").

    strategy: "greedy" (argmax), "sample" (temperature / top-k / top-p) or "beam" (reports only).
    max_new_tokens / min_new_tokens: bounds on generated text tokens (eos excluded; eos is
        forbidden before `min_new_tokens`). Image generation ignores both: it always emits H*W codes.
    top_k: keep the k most likely tokens (0 = off). top_p: smallest set with mass >= p (1 = off).
    num_beams / length_penalty: beam search; a finished beam scores sum(log p) / length**penalty.
    seed: base of the per-sample generators (see the module docstring).
    """

    strategy: str = "greedy"
    max_new_tokens: int = 256
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    length_penalty: float = 1.0
    seed: int = 0

    def validate(self) -> "DecodingConfig":
        """Raise `RadllmError` naming the first bad option; returns self."""
        if self.strategy not in STRATEGIES:
            raise RadllmError(f"decoding strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.max_new_tokens < 1:
            raise RadllmError(f"max_new_tokens = {self.max_new_tokens}; expected at least 1")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise RadllmError(f"min_new_tokens = {self.min_new_tokens}; expected 0..max_new_tokens ({self.max_new_tokens})")
        if self.temperature <= 0:
            raise RadllmError(f"temperature = {self.temperature}; expected > 0 (use strategy 'greedy' for argmax decoding)")
        if self.top_k < 0:
            raise RadllmError(f"top_k = {self.top_k}; expected >= 0 (0 switches it off)")
        if not 0 < self.top_p <= 1:
            raise RadllmError(f"top_p = {self.top_p}; expected a probability in (0, 1]")
        if self.num_beams < 1:
            raise RadllmError(f"num_beams = {self.num_beams}; expected at least 1")
        return self

    def describe(self) -> dict[str, Any]:
        """The settings that matter for `strategy`, for output records."""
        keys = {"greedy": (), "sample": ("temperature", "top_k", "top_p", "seed"), "beam": ("num_beams", "length_penalty")}[self.strategy]
        settings = asdict(self)
        return {"strategy": self.strategy, "max_new_tokens": self.max_new_tokens, "min_new_tokens": self.min_new_tokens} | {k: settings[k] for k in keys}


def sample_seed(seed: int, key: str) -> int:
    """63-bit seed of one sample's generator, a pure function of (run seed, sample key)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generators(seed: int, keys: Sequence[str], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample key (see `sample_seed`)."""
    generators = []
    for key in keys:
        generator = torch.Generator(device=device)
        generator.manual_seed(sample_seed(seed, key))
        generators.append(generator)
    return generators


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Scale by 1/temperature, then set everything outside the top-k / top-p set to -inf.

    Args:
        logits: [B, V] float scores; -inf entries (masked tokens) stay -inf.

    Returns:
        [B, V] filtered scores (a new tensor). Top-p keeps the smallest prefix of the sorted
        distribution whose mass reaches `top_p`, always including the most likely token.
    """
    scores = logits / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # [B, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # [B, V] mass of strictly more likely tokens
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def draw(scores: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """One token per row, sampled from softmax(scores[row]) with that row's own generator.

    Gumbel-max: argmax(scores + Gumbel noise) is distributed as softmax(scores). Each row's noise
    comes from its own generator, so a row's draw does not depend on the other rows.

    Args:
        scores: [B, V] (already filtered; -inf never wins).
        generators: B generators, on the device of `scores`.

    Returns:
        [B] int64 token indices.
    """
    if len(generators) != scores.shape[0]:
        raise ValueError(f"{len(generators)} generators for {scores.shape[0]} rows")
    vocab = scores.shape[-1]
    uniform = torch.stack([torch.rand(vocab, generator=g, device=scores.device, dtype=torch.float64) for g in generators])  # [B, V]
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float64).tiny)))
    return torch.argmax(scores.double() + gumbel, dim=-1)


def choose(scores: Tensor, config: DecodingConfig, generators: Sequence[torch.Generator] | None) -> Tensor:
    """Next token per row for greedy or sampled decoding ([B, V] masked scores -> [B] ids)."""
    if config.strategy == "greedy":
        return torch.argmax(scores, dim=-1)
    if generators is None:
        raise ValueError("sampled decoding needs one generator per row")
    return draw(filter_logits(scores, config.temperature, config.top_k, config.top_p), generators)
