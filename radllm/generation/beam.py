"""Batched beam search with a KV cache (report generation).

Definition (the one tests check against a cache-free reference):
- every prompt keeps `num_beams` live beams, scored by the sum of their tokens' log-probabilities;
  as in `transformers`, a token's log-probability is normalised over the whole vocabulary and
  the disallowed tokens are masked afterwards (a beam pays for mass the model put on tokens it
  may not emit); at the start only one beam exists;
- each step ranks the 2·num_beams best (beam, token) extensions of a prompt; an extension by eos
  ranked among the first num_beams becomes a finished hypothesis scored
  sum / length**length_penalty (length = generated tokens, eos included), other extensions
  refill the live beams in rank order;
- a prompt is done when it has num_beams finished hypotheses and its best live beam, normalised
  at the current length, does not beat the num_beams-th best of them (the usual heuristic,
  `early_stopping=False` in `transformers`); at `max_new_tokens` live beams count as finished;
- the answer is the best finished hypothesis.
All prompts' beams form one batch of B·num_beams rows; reordering beams reorders the cache rows.
Finished prompts stay in the batch (their rows are ignored) so beam rows keep their layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import PreTrainedModel

from radllm.generation.decode import CachedBatch
from radllm.generation.sampling import DecodingConfig

_DEAD = -1e9  # score of an unused beam slot (finite, so sums never produce nan)


def _nth_best(scores: list[tuple[float, list[int]]], n: int) -> float:
    return sorted((s for s, _ in scores), reverse=True)[n - 1]


@torch.inference_mode()
def beam_search(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    allowed: Tensor,
    eos_id: int,
    pad_id: int,
    config: DecodingConfig,
) -> list[list[int]]:
    """Best beam per prompt (eos excluded); see the module docstring for the exact rules."""
    nb, n = config.num_beams, len(prompts)
    batch = CachedBatch(model, prompts, pad_id, config.max_new_tokens)
    batch.repeat(nb)  # rows b*nb .. b*nb+nb-1 are prompt b's beams
    device = model.device
    blocked = torch.where(allowed.to(device), 0.0, float("-inf"))
    early = blocked.clone()
    early[eos_id] = float("-inf")
    scores = torch.full((n, nb), _DEAD, device=device)
    scores[:, 0] = 0.0
    history = torch.empty((n * nb, 0), dtype=torch.long)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
    done = [False] * n
    vocab = batch.logits.shape[-1]
    for step in range(config.max_new_tokens):
        length = step + 1
        norm = float(length) ** config.length_penalty
        logp = batch.logits.log_softmax(dim=-1) + (early if step < config.min_new_tokens else blocked)  # [n*nb, V]
        candidates = (scores.reshape(-1, 1) + logp).reshape(n, nb * vocab)
        top_scores, top_index = candidates.topk(2 * nb, dim=-1)  # [n, 2nb]
        top_scores, top_index = top_scores.cpu(), top_index.cpu()
        new_scores = torch.full((n, nb), _DEAD)
        new_source = torch.zeros((n, nb), dtype=torch.long)
        new_tokens = torch.full((n, nb), eos_id, dtype=torch.long)
        for b in range(n):
            if done[b]:
                continue
            filled = 0
            for rank in range(2 * nb):
                score, index = float(top_scores[b, rank]), int(top_index[b, rank])
                source, token = divmod(index, vocab)
                if token == eos_id:
                    if rank < nb:
                        finished[b].append((score / norm, history[b * nb + source].tolist()))
                    continue
                new_scores[b, filled], new_source[b, filled], new_tokens[b, filled] = score, source, token
                filled += 1
                if filled == nb:
                    break
            if len(finished[b]) >= nb and float(new_scores[b].max()) / norm <= _nth_best(finished[b], nb):
                done[b] = True
        rows = (torch.arange(n)[:, None] * nb + new_source).reshape(-1)  # [n*nb] source row of each new beam
        history = torch.cat([history[rows], new_tokens.reshape(-1, 1)], dim=1)
        if all(done):
            break
        if step == config.max_new_tokens - 1:
            for b in range(n):
                if not done[b]:
                    finished[b].extend((float(new_scores[b, k]) / norm, history[b * nb + k].tolist()) for k in range(nb) if new_scores[b, k] > _DEAD / 2)
            break
        scores = new_scores.to(device)
        batch.select(rows.to(device))
        batch.step(new_tokens.reshape(-1).to(device))
    return [max(hyps, key=lambda h: h[0])[1] for hyps in finished]
