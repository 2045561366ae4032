"""Batched decoding loops over a Hugging Face causal LM with a KV cache and left padding.

Prompts of different lengths are left-padded into one [B, T] batch: every row's last prompt token
sits in the last column, so one forward per step extends all rows. Padding is invisible to the
model through `attention_mask`, and `position_ids` count only real tokens (cumsum of the mask), so
a padded row computes what it would compute alone. The prompt is run once (prefill; identical
prompts once between them) into a `GrowingCache` sized for prompt + continuation (see
`radllm.generation.kv_cache`: in-place writes, attention over the filled prefix only). Rows that
finish (eos) are fed eos and dropped from the batch and the cache (`reorder_cache` with the
surviving rows) once they are a quarter of it (`DROP_FRACTION`): a batch costs about what its
longest rows need, without copying the cache every time one row ends (copies were 60 % of
decoding 224 report drafts on CPU).

Processes that must run the same number of forwards (a ZeRO-3-partitioned model gathers each
layer's parameters collectively inside every forward) pass `decode_text` a `stop_together` rule
instead: the batch keeps its rows, and the loop ends only when that rule, told whether this
process's rows have all ended, says every process's have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from transformers import PreTrainedModel

from radllm.generation.kv_cache import GrowingCache
from radllm.generation.sampling import DecodingConfig, choose

DROP_FRACTION = 0.25  # finished rows leave the batch once they are this fraction of it


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Left-pad prompts into (input_ids [B, T], attention_mask [B, T]; 1 = real token)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs at least one prompt and no empty prompt")
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def distinct_prompts(prompts: Sequence[Sequence[int]]) -> tuple[list[tuple[int, ...]], Tensor]:
    """The distinct prompts in first-seen order and, for each prompt, its index among them."""
    index: dict[tuple[int, ...], int] = {}
    rows = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return list(index), torch.tensor(rows, dtype=torch.long)


def positions(attention_mask: Tensor) -> Tensor:
    """position_ids [B, T] counting real tokens from 0 (pad positions get 0; they are masked)."""
    return (attention_mask.cumsum(dim=-1) - 1).clamp_min(0)


class CachedBatch:
    """A left-padded batch, its KV cache and the logits of each row's next token.

    Args:
        new_tokens: how many positions will be fed after the prompt at most (sizes the cache).
    """

    def __init__(self, model: PreTrainedModel, prompts: Sequence[Sequence[int]], pad_id: int, new_tokens: int) -> None:
        self.model = model
        device = model.device
        # Identical prompts (N drawings of one report, the one unconditional prompt of guidance)
        # are prefilled once and their rows repeated: prefill costs the distinct prompts only.
        distinct, rows = distinct_prompts(prompts)
        input_ids, self.attention_mask = left_pad(distinct, pad_id, device)
        position_ids = positions(self.attention_mask)
        self.next_position = position_ids[:, -1] + 1  # [B]
        self.cache = GrowingCache(model.config, capacity=input_ids.shape[1] + new_tokens)
        out = model(
            input_ids=input_ids, attention_mask=self.attention_mask, position_ids=position_ids,
            past_key_values=self.cache, use_cache=True, logits_to_keep=1,
        )
        self.logits = out.logits[:, -1, :].float()  # [B, V]
        if len(distinct) < len(prompts):
            self.select(rows.to(device))

    def step(self, tokens: Tensor) -> Tensor:
        """Feed one token per row ([B]); returns (and stores) the next logits [B, V]."""
        ones = torch.ones_like(self.attention_mask[:, :1])
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=-1)  # [B, T+1]
        out = self.model(
            input_ids=tokens[:, None], attention_mask=self.attention_mask, position_ids=self.next_position[:, None],
            past_key_values=self.cache, use_cache=True,
        )
        self.next_position = self.next_position + 1
        self.logits = out.logits[:, -1, :].float()
        return self.logits

    def repeat(self, n: int) -> None:
        """Repeat every row `n` times in place (row i becomes rows i*n .. i*n+n-1)."""
        self.select(torch.arange(self.logits.shape[0], device=self.logits.device).repeat_interleave(n))

    def select(self, rows: Tensor) -> None:
        """Keep `rows` (int64 indices, repeats allowed: beam reordering) of the batch and its cache."""
        self.cache.reorder_cache(rows)
        self.attention_mask = self.attention_mask[rows]
        self.next_position = self.next_position[rows]
        self.logits = self.logits[rows]


@torch.inference_mode()
def decode_text(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    allowed: Tensor,
    eos_id: int,
    pad_id: int,
    config: DecodingConfig,
    generators: Sequence[torch.Generator] | None = None,
    stop_together: Callable[[bool], bool] | None = None,
    unconditional_prompts: Sequence[Sequence[int]] | None = None,
    cfg_scale: float = 1.0,
    log_probs: list[list[float]] | None = None,
    stop_ids: Sequence[int] = (),
) -> list[list[int]]:
    """Greedy or sampled continuation of every prompt until eos, a stop id or `config.max_new_tokens`.

    Args:
        allowed: bool [V] of ids that may be emitted (eos among them); the rest get -inf.
        generators: one per prompt for `strategy == "sample"` (see `sampling.sample_generators`).
        stop_together: a rule shared by processes that must run identical forwards (see the
            module docstring): called after each step with whether all of this process's rows
            have ended; decoding stops only when it returns True (or at `max_new_tokens`).
            Rows that ended stay in the batch, fed eos, and emit nothing more (without the rule
            they leave it in bulk, `DROP_FRACTION`).
        unconditional_prompts: classifier-free guidance, as in `decode_image`: row i's
            unconditional prompt runs in the same batch (the second half), the next token is
            chosen from `guided_logits(c_i, u_i, cfg_scale)` and fed to both rows, and a row
            leaves the batch together with its unconditional twin.
        log_probs: when given (an empty list), filled with one list per prompt: the log-probability
            of each emitted id, eos included when emitted, under the model's own distribution
            (unguided, before temperature and filtering), from the decoding pass itself.
        stop_ids: ids that end a row like eos but are kept in its output (e.g. a sentence's end).

    Returns:
        Generated ids per prompt, eos excluded.
    """
    n = len(prompts)
    guided = unconditional_prompts is not None
    if guided and len(unconditional_prompts) != n:
        raise ValueError(f"{len(unconditional_prompts)} unconditional prompts for {n} conditional ones")
    batch = CachedBatch(model, [*prompts, *(unconditional_prompts or ())], pad_id, config.max_new_tokens)
    blocked = torch.where(allowed.to(model.device), 0.0, float("-inf"))  # [V]
    early = blocked.clone()
    early[eos_id] = float("-inf")  # before min_new_tokens eos is forbidden too
    outputs: list[list[int]] = [[] for _ in prompts]
    if log_probs is not None:
        log_probs.extend([] for _ in prompts)
    rows = torch.arange(n)  # original index of each row in the batch
    live_generators = list(generators) if generators is not None else None
    ended = torch.zeros(n, dtype=torch.bool, device=model.device)  # rows that emitted eos or a stop id (they stay until dropped)
    stops = torch.tensor(sorted({eos_id, *stop_ids}), dtype=torch.long, device=model.device)
    for step in range(config.max_new_tokens):
        logits = batch.logits
        live = rows.numel()
        conditional = logits[:live]
        if guided:
            logits = guided_logits(conditional, logits[live:], cfg_scale)
        scores = logits + (early if step < config.min_new_tokens else blocked)
        tokens = choose(scores, config, live_generators).masked_fill(ended, eos_id)  # [b]; ended rows only keep the shape
        emitting = (~ended).tolist()
        chosen_log_probs = torch.log_softmax(conditional, dim=-1).gather(1, tokens[:, None])[:, 0].tolist() if log_probs is not None else None
        for index, (row, token) in enumerate(zip(rows.tolist(), tokens.tolist())):
            if not emitting[index]:
                continue
            if token != eos_id:
                outputs[row].append(token)
            if chosen_log_probs is not None:
                log_probs[row].append(chosen_log_probs[index])
        if step == config.max_new_tokens - 1:
            break
        ended = torch.isin(tokens, stops)
        if stop_together is not None:
            if stop_together(bool(ended.all())):
                break
        elif ended.all():
            break
        elif ended.sum().item() >= DROP_FRACTION * live:
            keep = torch.nonzero(~ended).flatten()
            twins = torch.cat([keep, keep + live]) if guided else keep
            batch.select(twins.to(model.device))
            rows, tokens, ended = rows[keep.cpu()], tokens[keep], ended[keep]
            if live_generators is not None:
                live_generators = [live_generators[i] for i in keep.tolist()]
        batch.step(torch.cat([tokens, tokens]) if guided else tokens)
    return outputs


def guided_logits(conditional: Tensor, unconditional: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance u + s·(c − u), written as c + (s − 1)·(c − u).

    The two forms are equal; the second returns `conditional` bit for bit at s = 1, so scale 1
    reproduces unguided decoding exactly.
    """
    return conditional + (scale - 1.0) * (conditional - unconditional)


@torch.inference_mode()
def decode_image(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    boi_id: int,
    token_offset: int,
    codebook_size: int,
    num_tokens: int,
    pad_id: int,
    config: DecodingConfig,
    generators: Sequence[torch.Generator] | None = None,
    unconditional_prompts: Sequence[Sequence[int]] | None = None,
    cfg_scale: float = 1.0,
) -> Tensor:
    """Exactly `num_tokens` image codes per prompt, after a forced `<boi>`.

    Only the K image-code logits are ever considered, so every emitted token is an image code;
    the caller appends `<eoi>` (forced, so the model is not asked for it). With
    `unconditional_prompts`, row i's unconditional prompt runs in the same batch (rows B..2B-1)
    and the codes are drawn from `guided_logits(c_i, u_i, cfg_scale)`; the chosen code is fed
    to both rows.

    Returns:
        int64 [B, num_tokens] codes (0..K-1) in raster order.
    """
    n = len(prompts)
    guided = unconditional_prompts is not None
    if guided and len(unconditional_prompts) != n:
        raise ValueError(f"{len(unconditional_prompts)} unconditional prompts for {n} conditional ones")
    rows = [list(p) + [boi_id] for p in prompts]
    if guided:
        rows += [list(p) + [boi_id] for p in unconditional_prompts]
    batch = CachedBatch(model, rows, pad_id, num_tokens)
    codes = torch.empty((n, num_tokens), dtype=torch.long)
    for step in range(num_tokens):
        scores = batch.logits[:, token_offset : token_offset + codebook_size]  # [B or 2B, K]
        if guided:
            scores = guided_logits(scores[:n], scores[n:], cfg_scale)
        chosen = choose(scores, config, generators)  # [B]
        codes[:, step] = chosen.cpu()
        if step < num_tokens - 1:
            tokens = chosen + token_offset
            batch.step(torch.cat([tokens, tokens]) if guided else tokens)
    return codes


@torch.inference_mode()
def score_continuations(
    model: PreTrainedModel, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]], pad_id: int
) -> Tensor:
    """Log-likelihood of each continuation after each prompt: [B, A] (sum of token log-probs).

    The prompts are prefilled once; the cache is then repeated A times and all continuations
    (right-padded, masked) run in one forward.
    """
    if not continuations or any(len(c) == 0 for c in continuations):
        raise ValueError("score_continuations needs non-empty continuations")
    n, a = len(prompts), len(continuations)
    width = max(len(c) for c in continuations)
    batch = CachedBatch(model, prompts, pad_id, width)
    first_logp = batch.logits.log_softmax(dim=-1)  # [B, V]: distribution of each continuation's first token
    cont = torch.full((a, width), pad_id, dtype=torch.long)
    cont_mask = torch.zeros((a, width), dtype=torch.long)
    for j, c in enumerate(continuations):
        cont[j, : len(c)] = torch.as_tensor(list(c))
        cont_mask[j, : len(c)] = 1
    device = model.device
    cont, cont_mask = cont.to(device).repeat(n, 1), cont_mask.to(device).repeat(n, 1)  # [B*A, L], row i*a+j
    batch.repeat(a)
    attention_mask = torch.cat([batch.attention_mask, cont_mask], dim=-1)
    position_ids = batch.next_position[:, None] + torch.arange(width, device=device)  # [B*A, L]
    logits = model(
        input_ids=cont, attention_mask=attention_mask, position_ids=position_ids, past_key_values=batch.cache, use_cache=True
    ).logits.float()  # [B*A, L, V]: logits[:, k] predicts continuation token k+1
    logp = torch.cat([first_logp.repeat_interleave(a, dim=0)[:, None], logits[:, :-1].log_softmax(dim=-1)], dim=1)  # [B*A, L, V]
    token_logp = logp.gather(-1, cont[..., None]).squeeze(-1) * cont_mask  # [B*A, L]
    return token_logp.sum(dim=-1).view(n, a)
