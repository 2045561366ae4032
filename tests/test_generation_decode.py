"""Decoding loops of `radllm.generation` against independent references.

References: plain `transformers` `generate()` on the same model directory (greedy, beam), the
same loop at batch size 1, cache-free full-sequence forwards written here (beam search, CFG,
answer scoring) and hand-computed values (padding, top-k/top-p, guidance).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import make_model_dir
from transformers import DynamicCache

from radllm.generation.beam import beam_search
from radllm.generation.constraints import disallowed_ids, image_token_mask, report_token_mask
from radllm.generation.kv_cache import GrowingCache
from radllm.generation.decode import decode_image, decode_text, guided_logits, left_pad, positions, score_continuations
from radllm.generation.model import load_generator
from radllm.generation.sampling import DecodingConfig, draw, filter_logits, sample_generators
from radllm.tasks import image_generation_prompt, report_generation_prompt, unconditional_image_prompt, unconditional_report_prompt
from tokenizer_fixtures import CORPUS


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    torch.set_num_threads(1)
    model_dir, vq_dir = make_model_dir(tmp_path_factory.mktemp("gen"))
    return load_generator(model_dir, vq_dir)


def report_prompts(gen, n: int, seed: int = 0) -> list[list[int]]:
    """Stage-1 and stage-2 report prompts of 1 or 2 random views: different lengths, so left padding matters."""
    rng = np.random.default_rng(seed)
    spec = gen.spec
    prompts = []
    for i in range(n):
        views = [rng.integers(0, spec.codebook_size, (spec.grid_height, spec.grid_width)) for _ in range(1 + i % 2)]
        prompts.append(report_generation_prompt(views, gen.tokenizer, spec, stage=1 + (i // 2) % 2, template=i % 5))
    return prompts


def hf_generate(gen, prompts, allowed, eos_id, **kwargs) -> list[list[int]]:
    """`model.generate` on the left-padded batch, image/special ids suppressed as in our loop; eos and later dropped."""
    ids, mask = left_pad(prompts, gen.pad_id)
    out = gen.model.generate(
        input_ids=ids, attention_mask=mask, suppress_tokens=disallowed_ids(allowed), eos_token_id=eos_id,
        pad_token_id=gen.pad_id, **kwargs,
    )[:, ids.shape[1]:].tolist()
    return [row[: row.index(eos_id)] if eos_id in row else row for row in out]


def test_left_pad_and_positions_hand_checked():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions(mask).tolist() == [[0, 1, 2], [0, 0, 0]]


def test_report_mask_allows_text_and_eos_only(gen):
    spec, tok = gen.spec, gen.tokenizer
    mask = report_token_mask(tok, spec, gen.vocab_size)
    assert mask[tok.eos_token_id] and not mask[tok.bos_token_id] and not mask[tok.pad_token_id]
    assert not mask[spec.boi_id] and not mask[spec.eoi_id]
    assert not mask[spec.token_offset : spec.token_offset + spec.codebook_size].any()
    assert not mask[spec.text_vocab_size :].any()
    assert int(mask.sum()) == spec.text_vocab_size - len(set(tok.all_special_ids) & set(range(spec.text_vocab_size))) + 1
    assert image_token_mask(spec, gen.vocab_size).nonzero().flatten().tolist() == list(range(spec.token_offset, spec.token_offset + spec.codebook_size))


def test_greedy_batched_equals_batch_one_and_transformers_generate(gen):
    prompts = report_prompts(gen, 6)
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    config = DecodingConfig(max_new_tokens=16)
    # An eos the random model actually emits, so rows finish at different steps (rows leave the batch).
    probe = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config)
    eos = probe[0][5]
    batched = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config)
    lengths = {len(row) for row in batched}
    assert len(lengths) > 1 and 16 in lengths, f"want rows that stop early and rows that run to the limit, got {lengths}"
    single = [decode_text(gen.model, [p], allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config)[0] for p in prompts]
    assert batched == single
    reference = hf_generate(gen, prompts, allowed, eos, max_new_tokens=16, do_sample=False)
    assert batched == reference


def test_stop_together_keeps_rows_emits_the_same_tokens_and_runs_as_many_forwards_as_the_rule_says(gen):
    # The rank-agreed rule of ZeRO-3 sample decoding: ended rows stay in the batch (fed eos) and
    # the loop ends only when the rule agrees, so forwards = 1 prefill + the agreed steps.
    prompts = report_prompts(gen, 6)
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    config = DecodingConfig(max_new_tokens=24)
    probe = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config)
    eos, prompts = probe[4][3], [prompts[2], prompts[4], prompts[5]]  # an eos these rows emit after 3 to 11 tokens
    dropping = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config)
    longest = max(len(row) for row in dropping)
    assert min(len(row) for row in dropping) < longest < 23, "want rows ending at different steps, well before the limit"
    forwards, asked = [], []
    hook = gen.model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        def local_rule(done: bool) -> bool:
            asked.append(done)
            return done

        kept = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config, stop_together=local_rule)
        assert kept == dropping
        assert len(forwards) == longest + 1 and asked == [False] * longest + [True]  # step `longest` emits the last eos
        forwards.clear()
        never = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config, stop_together=lambda done: False)
        assert never == dropping and len(forwards) == 24  # another rank still decoding: keep stepping, emit nothing more
    finally:
        hook.remove()


def test_min_new_tokens_matches_transformers(gen):
    prompts = report_prompts(gen, 3, seed=1)
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    config = DecodingConfig(max_new_tokens=8)
    eos = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config)[0][1]
    ours = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=DecodingConfig(max_new_tokens=8, min_new_tokens=4))
    assert all(len(row) >= 4 for row in ours)
    assert ours == hf_generate(gen, prompts, allowed, eos, max_new_tokens=8, min_new_tokens=4, do_sample=False)


def test_reports_never_contain_image_tokens_even_when_the_model_prefers_them(gen):
    spec = gen.spec
    model = gen.model
    head = model.get_output_embeddings().weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head[spec.token_offset : spec.token_offset + spec.codebook_size] *= 50.0  # image ids dominate the logits
            head[spec.boi_id] *= 50.0
        prompts = report_prompts(gen, 4, seed=2)
        ids, mask = left_pad(prompts, gen.pad_id)
        with torch.no_grad():
            unconstrained = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits[:, -1].argmax(-1)
        assert all(spec.is_image_id(t) or t == spec.boi_id for t in unconstrained.tolist()), "the biased model must prefer visual ids"
        allowed = report_token_mask(gen.tokenizer, spec, gen.vocab_size)
        for config, gens in (
            (DecodingConfig(max_new_tokens=12), None),
            (DecodingConfig(strategy="sample", max_new_tokens=12, temperature=3.0), sample_generators(0, ["a", "b", "c", "d"])),
            (DecodingConfig(strategy="beam", max_new_tokens=6, num_beams=3), None),
        ):
            if config.strategy == "beam":
                out = beam_search(model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config)
            else:
                out = decode_text(model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config, generators=gens)
            tokens = [t for row in out for t in row]
            assert tokens and all(allowed[t] for t in tokens)
            assert not any(spec.is_image_id(t) or t in (spec.boi_id, spec.eoi_id) for t in tokens)
    finally:
        with torch.no_grad():
            head.copy_(saved)


def test_sampling_is_per_study_not_per_batch(gen):
    prompts = report_prompts(gen, 4, seed=3)
    keys = ["s0", "s1", "s2", "s3"]
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    config = DecodingConfig(strategy="sample", max_new_tokens=10, top_k=50, seed=7)

    def run(indices, seed=7):
        return decode_text(
            gen.model, [prompts[i] for i in indices], allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id,
            config=config, generators=sample_generators(seed, [keys[i] for i in indices]),
        )

    together = run([0, 1, 2, 3])
    assert run([2]) == [together[2]]
    assert run([3, 1]) == [together[3], together[1]]
    assert run([0, 1, 2, 3], seed=8) != together
    greedy = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=DecodingConfig(max_new_tokens=10))
    assert greedy != together


def test_filter_logits_hand_computed():
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    keep = lambda scores: torch.isfinite(scores).flatten().tolist()  # noqa: E731
    assert keep(filter_logits(logits, top_k=2)) == [True, True, False, False, False]
    assert keep(filter_logits(logits, top_p=0.7)) == [True, True, False, False, False]  # 0.5 < 0.7 <= 0.7
    assert keep(filter_logits(logits, top_p=0.71)) == [True, True, True, False, False]
    assert keep(filter_logits(logits, top_p=0.01)) == [True, False, False, False, False]
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2.0)


def test_draw_follows_softmax():
    probs = torch.tensor([0.6, 0.3, 0.1, 0.0])
    scores = torch.log(probs).expand(4000, 4)
    counts = torch.bincount(draw(scores, sample_generators(0, [str(i) for i in range(4000)])), minlength=4).double() / 4000
    assert counts[3] == 0
    torch.testing.assert_close(counts, probs.double(), atol=0.03, rtol=0)


@pytest.mark.parametrize("num_beams,length_penalty,min_new_tokens", [(3, 1.0, 0), (2, 0.0, 3), (4, 2.0, 0)])
def test_beam_search_matches_transformers(gen, num_beams, length_penalty, min_new_tokens):
    prompts = report_prompts(gen, 4, seed=4)
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    eos = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=DecodingConfig(max_new_tokens=8))[1][2]
    config = DecodingConfig(strategy="beam", num_beams=num_beams, max_new_tokens=8, length_penalty=length_penalty, min_new_tokens=min_new_tokens)
    ours = beam_search(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config)
    if length_penalty == 1.0:
        assert len({len(row) for row in ours}) > 1  # some beams end on eos, others run to the limit
    reference = hf_generate(
        gen, prompts, allowed, eos, max_new_tokens=8, min_new_tokens=min_new_tokens, num_beams=num_beams, do_sample=False, length_penalty=length_penalty
    )
    assert ours == reference


def test_one_beam_is_greedy(gen):
    prompts = report_prompts(gen, 4, seed=4)
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    eos = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=DecodingConfig(max_new_tokens=8))[1][2]
    one_beam = beam_search(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=DecodingConfig(strategy="beam", num_beams=1, max_new_tokens=8))
    assert one_beam == decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=DecodingConfig(max_new_tokens=8))


def image_prompts(gen, n: int) -> tuple[list[list[int]], list[list[int]]]:
    cond = [image_generation_prompt(CORPUS[i], gen.tokenizer, gen.spec, stage=2, template=i % 4) for i in range(n)]
    return cond, [unconditional_image_prompt(gen.tokenizer, gen.spec, stage=2)] * n


def run_images(gen, prompts, config, keys=None, unconditional=None, scale=1.0):
    spec = gen.spec
    return decode_image(
        gen.model, prompts, boi_id=spec.boi_id, token_offset=spec.token_offset, codebook_size=spec.codebook_size,
        num_tokens=spec.tokens_per_image, pad_id=gen.pad_id, config=config,
        generators=sample_generators(config.seed, keys) if keys else None, unconditional_prompts=unconditional, cfg_scale=scale,
    )


def test_image_decoding_emits_exactly_hw_codes_even_when_the_model_prefers_text(gen):
    spec = gen.spec
    head = gen.model.get_output_embeddings().weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head[: spec.text_vocab_size] *= 50.0
            head[spec.eoi_id] *= 50.0
        cond, _ = image_prompts(gen, 3)
        codes = run_images(gen, cond, DecodingConfig(strategy="sample", seed=1), keys=["a", "b", "c"])
        assert codes.shape == (3, spec.tokens_per_image)
        assert int(codes.min()) >= 0 and int(codes.max()) < spec.codebook_size
    finally:
        with torch.no_grad():
            head.copy_(saved)


def test_guided_logits_formula():
    c, u = torch.randn(3, 7), torch.randn(3, 7)
    torch.testing.assert_close(guided_logits(c, u, 3.5), u + 3.5 * (c - u))
    assert torch.equal(guided_logits(c, u, 1.0), c)


def test_cfg_scale_one_equals_unguided_sampling(gen):
    cond, uncond = image_prompts(gen, 3)
    keys = ["x", "y", "z"]
    config = DecodingConfig(strategy="sample", seed=5, top_k=8)
    unguided = run_images(gen, cond, config, keys)
    assert torch.equal(run_images(gen, cond, config, keys, unconditional=uncond, scale=1.0), unguided)
    assert not torch.equal(run_images(gen, cond, config, keys, unconditional=uncond, scale=3.0), unguided)
    assert not torch.equal(run_images(gen, cond, DecodingConfig(strategy="sample", seed=6, top_k=8), keys), unguided)


def test_cfg_greedy_matches_cache_free_reference(gen):
    """Guided greedy decoding computed with full forwards, one prompt and one branch at a time."""
    spec = gen.spec
    cond, uncond = image_prompts(gen, 2)
    scale, steps = 2.5, 6
    ours = run_images(gen, cond, DecodingConfig(), unconditional=uncond, scale=scale)[:, :steps]
    window = slice(spec.token_offset, spec.token_offset + spec.codebook_size)
    for row, (c_prompt, u_prompt) in enumerate(zip(cond, uncond)):
        c_ids, u_ids = c_prompt + [spec.boi_id], u_prompt + [spec.boi_id]
        for step in range(steps):
            with torch.no_grad():
                c = gen.model(torch.tensor([c_ids])).logits[0, -1, window].float()
                u = gen.model(torch.tensor([u_ids])).logits[0, -1, window].float()
            code = int(torch.argmax(u + scale * (c - u)))
            assert code == int(ours[row, step]), f"row {row} step {step}"
            c_ids.append(spec.token_offset + code)
            u_ids.append(spec.token_offset + code)


def test_identical_prompts_are_prefilled_once_and_decode_as_if_alone(gen):
    """N drawings of one report and guidance's shared unconditional prompt: the prefill forward
    sees each distinct prompt once, and every row still decodes exactly what it decodes alone."""
    cond, uncond = image_prompts(gen, 2)
    prompts = [cond[0], cond[1], cond[0], cond[0]]
    keys = ["a", "b", "a#1", "a#2"]
    config = DecodingConfig(strategy="sample", temperature=1.0, seed=3)
    widths = []
    hook = gen.model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape), with_kwargs=True)
    try:
        together = run_images(gen, prompts, config, keys=keys, unconditional=[uncond[0]] * 4, scale=2.0)
    finally:
        hook.remove()
    assert widths[0][0] == 3  # cond[0], cond[1] and the unconditional prompt; 8 rows afterwards
    assert all(shape[0] == 8 for shape in widths[1:])
    for row, (prompt, key) in enumerate(zip(prompts, keys)):
        alone = run_images(gen, [prompt], config, keys=[key], unconditional=[uncond[0]], scale=2.0)
        assert torch.equal(alone[0], together[row]), f"row {row}"


def guided_text_reference(gen, cond, uncond, allowed, eos, scale, max_new_tokens, log_probs=None):
    """Guided greedy report decoding with full forwards, one prompt and one branch at a time;
    `log_probs` (a list) gets each row's unguided log-probabilities of its emitted ids and eos."""
    blocked = torch.where(allowed, 0.0, float("-inf"))
    outputs = []
    for c_ids, u_ids in zip(cond, uncond):
        c_ids, u_ids, row = list(c_ids), list(u_ids), []
        if log_probs is not None:
            log_probs.append([])
        for _ in range(max_new_tokens):
            with torch.no_grad():
                c = gen.model(torch.tensor([c_ids])).logits[0, -1].float()
                u = gen.model(torch.tensor([u_ids])).logits[0, -1].float()
            token = int(torch.argmax(u + scale * (c - u) + blocked))
            if log_probs is not None:
                log_probs[-1].append(float(torch.log_softmax(c, dim=-1)[token]))
            if token == eos:
                break
            row.append(token)
            c_ids.append(token)
            u_ids.append(token)
        outputs.append(row)
    return outputs


def test_guided_report_decoding_matches_cache_free_reference_as_rows_finish(gen):
    prompts = report_prompts(gen, 4, seed=3)
    stages = [1, 1, 2, 2]  # report_prompts alternates stages in pairs
    uncond = [unconditional_report_prompt(gen.tokenizer, gen.spec, stage, template=i % 5) for i, stage in zip(range(4), stages)]
    allowed = report_token_mask(gen.tokenizer, gen.spec, gen.vocab_size)
    config, scale = DecodingConfig(max_new_tokens=12), 2.0
    unguided = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config)
    probe = decode_text(gen.model, prompts, allowed=allowed, eos_id=gen.tokenizer.eos_token_id, pad_id=gen.pad_id, config=config,
                        unconditional_prompts=uncond, cfg_scale=scale)
    assert probe != unguided
    eos = probe[1][3]  # a token the guided rows emit: some rows end early, and leave the batch with their twins
    ours = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config,
                       unconditional_prompts=uncond, cfg_scale=scale)
    assert len({len(row) for row in ours}) > 1
    expected_log_probs: list[list[float]] = []
    assert ours == guided_text_reference(gen, prompts, uncond, allowed, eos, scale, 12, expected_log_probs)
    # the model's own (unguided) log-probabilities of what was emitted, eos included, as rows leave the batch
    log_probs: list[list[float]] = []
    assert decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config,
                       unconditional_prompts=uncond, cfg_scale=scale, log_probs=log_probs) == ours
    assert [len(row) for row in log_probs] == [len(row) for row in expected_log_probs]
    assert [v for row in log_probs for v in row] == pytest.approx([v for row in expected_log_probs for v in row], abs=1e-4)
    kept = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config,
                       unconditional_prompts=uncond, cfg_scale=scale, stop_together=lambda done: done)
    assert kept == ours
    same = decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config,
                       unconditional_prompts=uncond, cfg_scale=1.0)
    assert same == decode_text(gen.model, prompts, allowed=allowed, eos_id=eos, pad_id=gen.pad_id, config=config)


def test_answer_scores_match_full_forward(gen):
    prompts = report_prompts(gen, 3, seed=5)
    continuations = [[40, 2], [41, 42, 43, 2], [7, 2]]
    ours = score_continuations(gen.model, prompts, continuations, gen.pad_id)
    for i, prompt in enumerate(prompts):
        for j, cont in enumerate(continuations):
            ids = torch.tensor([prompt + cont])
            with torch.no_grad():
                logp = gen.model(ids).logits[0].float().log_softmax(-1)
            expected = sum(float(logp[len(prompt) - 1 + k, tok]) for k, tok in enumerate(cont))
            assert abs(float(ours[i, j]) - expected) < 1e-4


def test_growing_cache_matches_dynamic_cache_through_steps_and_row_selection(gen):
    prompts = report_prompts(gen, 3, seed=6)
    ids, mask = left_pad(prompts, gen.pad_id)
    pos = positions(mask)
    caches = {"growing": GrowingCache(gen.model.config, capacity=ids.shape[1] + 1), "dynamic": DynamicCache()}
    logits = {}
    with torch.no_grad():
        for name, cache in caches.items():
            first = gen.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True).logits[:, -1]
            rows = torch.tensor([2, 0, 0])  # drop row 1, duplicate row 0 (beam reordering)
            cache.reorder_cache(rows)
            step_mask = torch.cat([mask[rows], torch.ones(3, 1, dtype=mask.dtype)], dim=-1)
            tokens = torch.tensor([[7], [8], [9]])
            second = gen.model(input_ids=tokens, attention_mask=step_mask, position_ids=pos[rows, -1:] + 1, past_key_values=cache, use_cache=True).logits[:, -1]
            logits[name] = (first, second, cache.get_seq_length())
        with pytest.raises(ValueError, match="capacity"):
            gen.model(input_ids=tokens, attention_mask=torch.cat([step_mask, torch.ones(3, 1, dtype=mask.dtype)], -1),
                      position_ids=pos[rows, -1:] + 2, past_key_values=caches["growing"], use_cache=True)
    torch.testing.assert_close(logits["growing"][0], logits["dynamic"][0])
    torch.testing.assert_close(logits["growing"][1], logits["dynamic"][1])
    assert logits["growing"][2] == logits["dynamic"][2] == ids.shape[1] + 1
