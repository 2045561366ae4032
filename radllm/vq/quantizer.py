"""Vector quantizer with an l2-normalised low-dimensional code lookup and code-usage tracking.

Encoder features are projected to `codebook_dim` (8) channels and matched to the codebook by
cosine similarity (both sides l2-normalised), as in LlamaGen: in a small normalised space almost
every code stays in use, so the LLM does not waste vocabulary rows on dead tokens. Codes that
still fall out of use are detected with an EMA of each code's share of assignments and can be
re-seeded from recent encoder outputs by the training loop (`revive_dead_codes`). The usage and
perplexity of a code histogram are defined here, next to the counting; `radllm.vq.metrics` reports
the same two numbers for evaluation sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from radllm.vq.config import VQConfig


def usage_from_counts(counts: Tensor) -> Tensor:
    """Fraction of codes with a non-zero count (scalar tensor)."""
    return (counts > 0).float().mean()


def perplexity_from_counts(counts: Tensor) -> Tensor:
    """exp(entropy) of the code distribution given by `counts` (scalar tensor).

    Equals the number of codes when all are used equally and 1 when a single code is used (or
    the histogram is empty). Branch-free, so it costs no device synchronisation in training.
    """
    p = counts / counts.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()  # 0 * log(tiny) = 0 for unused codes
    return torch.exp(entropy)


@dataclass
class QuantizerOutput:
    """What one quantizer call produces; the loss and the training loop read the fields by name."""

    z_q: Tensor  # [B, C, h, w] quantized features, straight-through: gradients flow to the encoder
    codes: Tensor  # int64 [B, h, w] code index per grid cell
    codebook_loss: Tensor  # scalar: moves codes towards (detached) encoder outputs
    commitment_loss: Tensor  # scalar, already multiplied by commitment_beta: keeps encoder near codes
    perplexity: Tensor  # scalar: exp(entropy) of the batch's code histogram (K = perfectly uniform)
    usage: Tensor  # scalar: fraction of the K codes used at least once in this batch
    latents: Tensor  # [B*h*w, codebook_dim] detached normalised lookup vectors: revival candidates


class VectorQuantizer(nn.Module):
    """Nearest-code lookup by cosine similarity in a projected, l2-normalised space.

    Usage statistics (`usage_share`) are updated in training mode only. When a default
    `torch.distributed` process group is initialised, the per-batch code counts are all-reduced
    before the EMA update, so every rank holds the same statistics and `dead_code_mask()` agrees
    across ranks (every rank must therefore run the same number of training forwards).
    """

    usage_share: Tensor

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.codebook_size = config.codebook_size
        self.codebook_dim = config.codebook_dim
        self.beta = config.commitment_beta
        self.usage_decay = config.usage_decay
        self.dead_code_threshold = config.dead_code_threshold
        self.proj_in = nn.Conv2d(config.z_channels, config.codebook_dim, kernel_size=1)
        self.proj_out = nn.Conv2d(config.codebook_dim, config.z_channels, kernel_size=1)
        self.codebook = nn.Embedding(config.codebook_size, config.codebook_dim)
        nn.init.normal_(self.codebook.weight)  # directions uniform on the sphere after normalising
        # EMA of each code's share of assignments; starts uniform so no code is dead at step 0.
        self.register_buffer("usage_share", torch.full((config.codebook_size,), 1.0 / config.codebook_size))

    def normalized_codebook(self) -> Tensor:
        """Float32 [K, codebook_dim] unit-length code vectors (the lookup table actually used)."""
        return F.normalize(self.codebook.weight.float(), dim=1)

    def forward(self, z: Tensor) -> QuantizerOutput:
        B, _, h, w = z.shape
        # The lookup runs in float32 even under autocast: bf16 cosines (3 significant digits)
        # would pick among near-tied codes almost at random.
        z_e = F.normalize(self.proj_in(z).float(), dim=1)  # [B, d, h, w], unit length per cell
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.codebook_dim)  # [B*h*w, d]
        codebook = self.normalized_codebook()  # [K, d]
        codes = (flat @ codebook.t()).argmax(dim=1)  # [B*h*w]: max cosine = nearest unit vector
        quantized = codebook[codes]  # [B*h*w, d]

        codebook_loss = F.mse_loss(quantized, flat.detach())
        commitment_loss = self.beta * F.mse_loss(flat, quantized.detach())
        straight = flat + (quantized - flat).detach()  # value of the code, gradient of identity
        straight = straight.view(B, h, w, self.codebook_dim).permute(0, 3, 1, 2)  # [B, d, h, w]
        z_q = self.proj_out(straight.to(z.dtype))  # [B, C, h, w]

        counts = torch.bincount(codes, minlength=self.codebook_size).float()  # [K]
        if self.training:
            self._update_usage(counts)
        return QuantizerOutput(
            z_q=z_q,
            codes=codes.view(B, h, w),
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            perplexity=perplexity_from_counts(counts),
            usage=usage_from_counts(counts),
            latents=flat.detach(),
        )

    @torch.no_grad()
    def _update_usage(self, counts: Tensor) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            counts = counts.clone()
            dist.all_reduce(counts)
        share = counts / counts.sum().clamp_min(1.0)
        self.usage_share.mul_(self.usage_decay).add_(share, alpha=1.0 - self.usage_decay)

    def lookup(self, codes: Tensor) -> Tensor:
        """Quantized features for a code grid: int [B, h, w] -> [B, C, h, w] (decoder input)."""
        if codes.dtype.is_floating_point:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size - 1}], got range [{int(codes.min())}, {int(codes.max())}]")
        vectors = self.normalized_codebook()[codes.long()]  # [B, h, w, d]
        return self.proj_out(vectors.permute(0, 3, 1, 2).to(self.proj_out.weight.dtype))  # [B, C, h, w]

    def dead_code_mask(self) -> Tensor:
        """Bool [K]: codes whose EMA share is below dead_code_threshold x the uniform share 1/K."""
        return self.usage_share < self.dead_code_threshold / self.codebook_size

    @torch.no_grad()
    def revive_dead_codes(self, candidates: Tensor, generator: torch.Generator | None = None) -> int:
        """Re-seed every dead code with a randomly chosen candidate vector; returns how many.

        Args:
            candidates: [N, codebook_dim] recent encoder outputs in the lookup space
                (`QuantizerOutput.latents`, possibly pooled over several steps). Drawn with
                replacement when there are fewer candidates than dead codes.
            generator: source of the random choice (on the candidates' device).

        Revived codes restart at the uniform usage share, so they get the full grace period before
        they can be declared dead again. Optimizer state of the revived rows is not touched.

        Distributed safety: the codebook is a replicated parameter, so every rank must make the
        same replacement. Usage statistics are already identical across ranks (see class doc); the
        trainer must also pass identical `candidates` (e.g. gathered or broadcast from rank 0)
        and identically seeded `generator`s on all ranks, or broadcast `codebook.weight` from
        rank 0 after calling this on rank 0 only.
        """
        if candidates.dim() != 2 or candidates.shape[1] != self.codebook_dim:
            raise ValueError(f"candidates must have shape [N, {self.codebook_dim}], got {list(candidates.shape)}")
        dead = self.dead_code_mask().nonzero().flatten()  # [n_dead]
        n_dead = dead.numel()
        if n_dead == 0:
            return 0
        if candidates.shape[0] == 0:
            raise ValueError(f"{n_dead} dead codes but no candidates to revive them from")
        if candidates.shape[0] >= n_dead:
            pick = torch.randperm(candidates.shape[0], generator=generator, device=candidates.device)[:n_dead]
        else:
            pick = torch.randint(candidates.shape[0], (n_dead,), generator=generator, device=candidates.device)
        weight = self.codebook.weight
        weight[dead] = candidates[pick].to(device=weight.device, dtype=weight.dtype)
        self.usage_share[dead] = 1.0 / self.codebook_size
        return n_dead
