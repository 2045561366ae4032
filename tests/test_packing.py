"""Packing: row layout, stats, streaming, collation, the loss, and the key property that a packed
row gives every sample the same loss as running it alone (SDPA, eager, and the flash varlen
inputs through a reference varlen attention registered with transformers)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

from radllm.errors import RadllmError
from radllm.modeling import packed_attention
from radllm.modeling.packed_attention import VARLEN_SDPA, model_inputs_for_packed_batch, select_attention_implementation
from radllm.packing import (
    PackingStats,
    block_causal_mask,
    causal_lm_loss,
    collate_packed,
    collate_padded,
    pack_carrying,
    pack_examples,
    pack_stream,
    packing_efficiency,
)
from radllm.tasks.example import IGNORE_INDEX, TaskExample, prompt_response_example

PAD = 0
VOCAB = 300


def make_example(length: int, prompt: int, key: str, rng: random.Random) -> TaskExample:
    ids = [1] + [rng.randrange(3, VOCAB) for _ in range(length - 1)]
    return TaskExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:], "t", key)


def random_examples(n: int, rng: random.Random, lo: int = 2, hi: int = 30) -> list[TaskExample]:
    out = []
    for i in range(n):
        length = rng.randint(lo, hi)
        out.append(make_example(length, rng.randint(1, length - 1), f"e{i}", rng))
    return out


def unpack(rows) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Independent reading of rows: cut each row at its sample lengths."""
    samples = []
    for row in rows:
        for start, end in zip(row.cu_seqlens[:-1], row.cu_seqlens[1:]):
            samples.append((tuple(row.input_ids[start:end]), tuple(row.labels[start:end])))
    return samples


# --- row layout -------------------------------------------------------------------------------------


def test_hand_example_layout_and_efficiency():
    a = TaskExample([1, 11, 12, 13, 14], [-100, -100, 12, 13, 14], "t", "a")
    b = TaskExample([1, 21, 22], [-100, 21, 22], "t", "b")
    c = TaskExample([1, 31, 32, 33], [-100, -100, -100, 33], "t", "c")
    stats = PackingStats()
    rows = pack_examples([a, b, c], seq_len=8, pad_id=PAD, stats=stats)
    # the first row takes the subset closest to 8 tokens: a + b = 8 exactly; c is left for row 1
    assert [row.keys for row in rows] == [["a", "b"], ["c"]]
    assert rows[0].input_ids == [1, 11, 12, 13, 14, 1, 21, 22]
    assert rows[0].labels == [-100, -100, 12, 13, 14, -100, 21, 22]
    assert rows[0].position_ids == [0, 1, 2, 3, 4, 0, 1, 2]
    assert rows[1].input_ids == [1, 31, 32, 33, PAD, PAD, PAD, PAD]
    assert rows[1].labels == [-100, -100, -100, 33, -100, -100, -100, -100]
    assert rows[1].position_ids == [0, 1, 2, 3, 0, 1, 2, 3]
    assert rows[0].cu_seqlens == [0, 5, 8] and rows[1].cu_seqlens == [0, 4]
    assert packing_efficiency(rows) == 12 / 16
    assert stats.efficiency == 12 / 16 and stats.rows == 2 and stats.packed == 3 and stats.examples == 3


def test_random_packing_keeps_every_example_once_and_is_tight():
    rng = random.Random(0)
    examples = random_examples(300, rng)
    rows = pack_examples(examples, seq_len=64, pad_id=PAD)
    assert all(row.seq_len == 64 for row in rows)
    assert Counter(unpack(rows)) == Counter((tuple(e.input_ids), tuple(e.labels)) for e in examples)
    for row in rows:
        for start, end in zip(row.cu_seqlens[:-1], row.cu_seqlens[1:]):
            assert row.position_ids[start:end] == list(range(end - start))
        assert row.position_ids[row.n_real :] == list(range(row.n_pad))
        assert row.input_ids[row.n_real :] == [PAD] * row.n_pad and set(row.labels[row.n_real :]) <= {IGNORE_INDEX}
    lower_bound = math.ceil(sum(len(e) for e in examples) / 64)
    assert lower_bound <= len(rows) <= lower_bound + 1
    # every row but the last is maximal: no example from a later row would fit into its padding
    for i, row in enumerate(rows[:-1]):
        assert all(n > row.n_pad for later in rows[i + 1 :] for n in later.seq_lens)


def test_overflow_drop_and_truncate_are_counted():
    rng = random.Random(1)
    long_example = make_example(40, 10, "long", rng)
    late_targets = make_example(40, 35, "late", rng)  # every target lies beyond position 32
    short = make_example(5, 2, "short", rng)
    dropped = PackingStats()
    rows = pack_examples([long_example, late_targets, short], seq_len=32, pad_id=PAD, stats=dropped)
    assert [row.keys for row in rows] == [["short"]] and dropped.dropped_too_long == 2 and dropped.packed == 1
    cut = PackingStats()
    rows = pack_examples([long_example, late_targets, short], seq_len=32, pad_id=PAD, overflow="truncate", stats=cut)
    assert cut.truncated == 2 and cut.truncated_tokens == 16 and cut.dropped_no_targets == 1 and cut.packed == 2
    kept = next(row for row in rows if row.keys == ["long"])
    assert kept.input_ids == long_example.input_ids[:32] and kept.labels == long_example.labels[:32]
    with pytest.raises(ValueError, match="overflow='wrap'"):
        pack_examples([short], seq_len=32, pad_id=PAD, overflow="wrap")


def test_carrying_holds_back_the_least_filled_row_and_fills_every_other_row_fuller_than_batch_alone():
    """Small batches (the trainer's loader batches): carried rows against each batch packed alone."""
    rng = random.Random(5)
    batches = [random_examples(9, rng, lo=10, hi=40) for _ in range(30)]
    alone = [row for batch in batches for row in pack_examples(batch, seq_len=64, pad_id=PAD)]
    carried, held, seen = [], [], []
    for call, batch in enumerate(batches):
        rows, new_held = pack_carrying(batch, seq_len=64, pad_id=PAD, held=held)
        if held:  # what was held opens this call's first row, which goes out now
            assert rows[0].keys[: len(held)] == [e.key for e in held]
        if new_held:  # the held row is the least-filled of the rows it was chosen from, and not full
            free = rows[1:] if held else rows
            assert sum(len(e) for e in new_held) < 64
            assert all(row.n_real >= sum(len(e) for e in new_held) for row in free)
        carried.extend(rows)
        seen.extend(call for _ in rows)
        held = new_held
    rows, rest = pack_carrying([], seq_len=64, pad_id=PAD, held=held)
    assert rest == [] and len(rows) == (1 if held else 0)  # the last held row goes out at the next call
    carried.extend(rows)
    expected = Counter((tuple(e.input_ids), tuple(e.labels)) for batch in batches for e in batch)
    assert Counter(unpack(carried)) == expected == Counter(unpack(alone))
    assert packing_efficiency(carried) > packing_efficiency(alone) + 0.03  # each batch's part-empty last row is gone
    assert len(carried) < len(alone)


def test_stream_packer_keeps_every_example_and_delays_none_beyond_two_buffers():
    rng = random.Random(2)
    examples = random_examples(250, rng)
    buffer = 16
    consumed = 0

    def source():
        nonlocal consumed
        for example in examples:
            consumed += 1
            yield example

    stats = PackingStats()
    rows = []
    for row in pack_stream(source(), seq_len=64, pad_id=PAD, buffer_size=buffer, stats=stats):
        for key in row.keys:
            index = int(key[1:])
            assert consumed <= min((index // buffer + 2) * buffer, len(examples)), (key, consumed)
        rows.append(row)
    assert Counter(unpack(rows)) == Counter((tuple(e.input_ids), tuple(e.labels)) for e in examples)
    assert stats.rows == len(rows) and stats.packed == len(examples)
    assert stats.efficiency == pytest.approx(packing_efficiency(rows))
    assert stats.efficiency > 0.9
    assert list(pack_stream(iter([]), seq_len=64, pad_id=PAD)) == []
    assert len(list(pack_stream(examples[:3], seq_len=64, pad_id=PAD, buffer_size=1))) >= 1


# --- collation and loss -------------------------------------------------------------------------


def naive_mask(rows) -> torch.Tensor:
    length = rows[0].seq_len
    mask = torch.zeros(len(rows), 1, length, length, dtype=torch.bool)
    for b, row in enumerate(rows):
        bounds = row.cu_seqlens + ([length] if row.n_pad else [])
        for start, end in zip(bounds[:-1], bounds[1:]):
            for i in range(start, end):
                for j in range(start, i + 1):
                    mask[b, 0, i, j] = True
    return mask


def test_collate_packed_matches_transformers_varlen_layout_and_naive_mask():
    rows = pack_examples(random_examples(12, random.Random(3)), seq_len=48, pad_id=PAD)
    batch = collate_packed(rows)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["position_ids"].shape == (len(rows), 48)
    (cu_q, cu_k), (max_q, _) = prepare_fa_kwargs_from_position_ids(batch["position_ids"])
    assert torch.equal(batch["cu_seqlens"], cu_q) and torch.equal(cu_q, cu_k)
    assert batch["cu_seqlens"].dtype == torch.int32 and int(batch["max_seqlen"]) == int(max_q)
    assert "attention_mask" not in batch  # how attention keeps to the boundaries is the model side's choice
    assert torch.equal(block_causal_mask(batch["position_ids"]), naive_mask(rows))
    assert torch.equal(model_inputs_for_packed_batch(batch, "sdpa")["attention_mask"], naive_mask(rows))
    with pytest.raises(ValueError, match="rows differ in length"):
        collate_packed([rows[0], *pack_examples(random_examples(2, random.Random(4)), seq_len=40, pad_id=PAD)])


def test_collate_padded_hand_example():
    a = TaskExample([1, 5, 6], [-100, 5, 6], "t", "a")
    b = TaskExample([1, 7], [-100, 7], "t", "b")
    batch = collate_padded([a, b], pad_id=PAD, pad_to_multiple_of=4)
    assert batch["input_ids"].tolist() == [[1, 5, 6, PAD], [1, 7, PAD, PAD]]
    assert batch["labels"].tolist() == [[-100, 5, 6, -100], [-100, 7, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


def test_causal_lm_loss_hand_computed():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [9.0, 9.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 1, 0]])
    # position 0 predicts label 1 with p = 1/2; position 1 predicts label 0 with p = 3/4
    sum_loss, n_tokens = causal_lm_loss(logits, labels)
    assert sum_loss.item() == pytest.approx(math.log(2.0) + math.log(4.0 / 3.0))
    assert n_tokens.item() == 2
    empty_sum, empty_n = causal_lm_loss(logits, torch.full((1, 3), IGNORE_INDEX))
    assert empty_sum.item() == 0.0 and empty_n.item() == 0
    with pytest.raises(ValueError, match="disagree"):
        causal_lm_loss(logits, labels[:, :2])


# --- packed rows through a real (tiny) causal LM --------------------------------------------------------


def tiny_llama(attn_implementation: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, max_position_embeddings=128, attn_implementation=attn_implementation,
    )
    return LlamaForCausalLM(config).eval()


def per_sample_packed_losses(logits: torch.Tensor, batch, rows) -> list[float]:
    token_loss = F.cross_entropy(
        logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )  # [B, L-1]: loss of predicting token t+1 from position t
    losses = []
    for b, row in enumerate(rows):
        for start, end in zip(row.cu_seqlens[:-1], row.cu_seqlens[1:]):
            losses.append(token_loss[b, start : end - 1].sum().item())
    return losses


def alone_losses(model, rows) -> list[float]:
    losses = []
    for row in rows:
        for start, end in zip(row.cu_seqlens[:-1], row.cu_seqlens[1:]):
            ids = torch.tensor([row.input_ids[start:end]])
            labels = torch.tensor([row.labels[start:end]])
            losses.append(causal_lm_loss(model(input_ids=ids).logits, labels)[0].item())
    return losses


@pytest.fixture(scope="module")
def packed_rows():
    rows = pack_examples(random_examples(14, random.Random(5), lo=3, hi=24), seq_len=40, pad_id=PAD)
    assert len(rows) >= 2 and any(len(row.seq_lens) >= 3 for row in rows) and any(row.n_pad for row in rows)
    return rows


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", "flex_attention", VARLEN_SDPA])  # flex: forward only on CPU
@torch.no_grad()
def test_packed_rows_give_the_same_per_sample_loss_as_samples_alone(attn_implementation, packed_rows):
    model = tiny_llama(attn_implementation)
    batch = collate_packed(packed_rows)
    logits = model(**model_inputs_for_packed_batch(batch, attn_implementation)).logits
    packed = per_sample_packed_losses(logits, batch, packed_rows)
    alone = alone_losses(model, packed_rows)
    assert packed == pytest.approx(alone, abs=1e-5)
    sum_loss, n_tokens = causal_lm_loss(logits, batch["labels"])
    assert sum_loss.item() == pytest.approx(sum(alone), abs=1e-4)
    assert n_tokens.item() == sum(sum(1 for x in row.labels if x != IGNORE_INDEX) for row in packed_rows)
    # the same model's own loss (mean over shifted targets) agrees with (sum, count)
    hf_loss = model(**model_inputs_for_packed_batch(batch, attn_implementation), labels=batch["labels"]).loss
    assert hf_loss.item() == pytest.approx(sum_loss.item() / n_tokens.item(), abs=1e-5)


def block_table(num_blocks: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """BlockMask's ordered (count, indices) layout as a bool [B, H, q blocks, kv blocks] table."""
    listed = torch.arange(indices.shape[-1]) < num_blocks[..., None]
    return torch.zeros(indices.shape, dtype=torch.bool).scatter_(-1, indices.long(), listed)


@pytest.mark.parametrize("seed", range(6))
def test_document_block_mask_equals_flex_own_block_mask_from_the_mask_function(seed):
    """The block table worked out from block boundaries is the one `create_block_mask` finds by
    evaluating the document mask at every (query, key) pair: same partial and same full blocks."""
    from torch.nn.attention.flex_attention import create_block_mask

    rng, batch, length = random.Random(seed), 2, 1024
    runs = []
    for _ in range(batch):
        left = length
        while left:  # runs shorter, equal to and longer than a 128-token block, some one-token
            runs.append(min(left, rng.choice([1, 7, 60, 127, 128, 129, 256, 300, 700])))
            left -= runs[-1]
    cu_seqlens = torch.tensor([0, *runs]).cumsum(0).to(torch.int32)
    mine = packed_attention.document_block_mask(cu_seqlens, batch, length, "cpu")
    document = torch.repeat_interleave(torch.arange(len(runs)), torch.tensor(runs)).view(batch, length)
    reference = create_block_mask(lambda b, h, q, kv: (document[b, q] == document[b, kv]) & (kv <= q), batch, None, length, length, device="cpu")
    assert torch.equal(block_table(mine.kv_num_blocks, mine.kv_indices), block_table(reference.kv_num_blocks, reference.kv_indices))
    assert torch.equal(block_table(mine.full_kv_num_blocks, mine.full_kv_indices),
                       block_table(reference.full_kv_num_blocks, reference.full_kv_indices))
    assert int(mine.full_kv_num_blocks.sum()) > 0  # the test exercises fully visible blocks


@torch.no_grad()
def test_position_ids_alone_leak_across_samples_when_the_model_builds_a_cache(packed_rows):
    """Why `use_cache=False` and an explicit mask: transformers infers packing from position_ids
    only without a cache, and Llama's default config creates one in forward."""
    model = tiny_llama("sdpa")
    assert model.config.use_cache
    batch = collate_packed(packed_rows)
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    leaked = per_sample_packed_losses(logits, batch, packed_rows)
    alone = alone_losses(model, packed_rows)
    assert max(abs(a - b) for a, b in zip(leaked, alone)) > 1e-3


@torch.no_grad()
def test_padded_collate_gives_the_same_per_sample_loss(packed_rows):
    model = tiny_llama("sdpa")
    examples = [
        TaskExample(row.input_ids[s:e], row.labels[s:e], "t", "k")
        for row in packed_rows
        for s, e in zip(row.cu_seqlens[:-1], row.cu_seqlens[1:])
    ]
    batch = collate_padded(examples, pad_id=PAD)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    padded = [causal_lm_loss(logits[i : i + 1], batch["labels"][i : i + 1])[0].item() for i in range(len(examples))]
    assert padded == pytest.approx(alone_losses(model, packed_rows), abs=1e-5)


def reference_varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """flash_attn_varlen_func semantics in plain torch, reading the kwargs flash attention gets."""
    assert attention_mask is None, "the varlen path must not receive a mask"
    cu, max_len = kwargs["cu_seq_lens_q"], kwargs["max_length_q"]
    assert torch.equal(cu, kwargs["cu_seq_lens_k"]) and max_len == kwargs["max_length_k"]
    batch, heads, length, dim = query.shape  # [B, H, L, D]
    repeat = heads // key.shape[1]
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)  # [B*L, H, D]
    k = key.repeat_interleave(repeat, dim=1).transpose(1, 2).reshape(batch * length, heads, dim)
    v = value.repeat_interleave(repeat, dim=1).transpose(1, 2).reshape(batch * length, heads, dim)
    out = torch.empty_like(q)
    assert int((cu[1:] - cu[:-1]).max()) == max_len
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist()):
        scores = torch.einsum("qhd,khd->hqk", q[start:end], k[start:end]) * scaling  # [H, n, n]
        causal = torch.ones(end - start, end - start, dtype=torch.bool).tril()
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        out[start:end] = torch.einsum("hqk,khd->qhd", weights, v[start:end])
    return out.view(batch, length, heads, dim), None  # flash layout: [B, L, H, D]


@torch.no_grad()
def test_flash_inputs_reach_attention_and_keep_samples_apart(monkeypatch, packed_rows):
    name = "radllm_reference_varlen"
    monkeypatch.setitem(AttentionInterface._global_mapping, name, reference_varlen_attention)
    monkeypatch.setitem(AttentionMaskInterface._global_mapping, name, flash_attention_mask)
    model = tiny_llama("sdpa")
    alone = alone_losses(model, packed_rows)
    model.config._attn_implementation = name
    batch = collate_packed(packed_rows)
    inputs = model_inputs_for_packed_batch(batch, "flash_attention_2")
    assert "attention_mask" not in inputs and isinstance(inputs["max_length_q"], int)
    packed = per_sample_packed_losses(model(**inputs).logits, batch, packed_rows)
    assert packed == pytest.approx(alone, abs=1e-5)


def test_varlen_sdpa_trains_like_the_dense_mask_and_leaves_no_trace_in_saved_configs(packed_rows, tmp_path):
    """Same loss and gradients as SDPA with the dense block mask (the kernel runs each sample
    alone); a saved model does not name the kernel, so plain transformers loads it anywhere."""
    grads = {}
    for kernel in ("sdpa", VARLEN_SDPA):
        model = tiny_llama(kernel).train()
        batch = collate_packed(packed_rows)
        loss, _ = causal_lm_loss(model(**model_inputs_for_packed_batch(batch, kernel)).logits, batch["labels"])
        loss.backward()
        grads[kernel] = (loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()})
    (dense_loss, dense), (varlen_loss, varlen) = grads.values()
    torch.testing.assert_close(varlen_loss, dense_loss, rtol=1e-5, atol=1e-6)
    for name, grad in dense.items():
        torch.testing.assert_close(varlen[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    model.save_pretrained(tmp_path)
    assert VARLEN_SDPA not in (tmp_path / "config.json").read_text()


@torch.no_grad()
def test_varlen_sdpa_without_packed_boundaries_is_sdpa_with_the_padding_mask():
    """Generation calls the training model with left-padded prompts and a 2-D mask, no boundaries."""
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    reference = tiny_llama("sdpa")(input_ids=ids, attention_mask=mask).logits
    logits = tiny_llama(VARLEN_SDPA)(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits[mask.bool()], reference[mask.bool()], rtol=1e-5, atol=1e-5)


def test_eager_mask_is_additive_in_the_model_dtype(packed_rows):
    batch = collate_packed(packed_rows)
    mask = model_inputs_for_packed_batch(batch, "eager", dtype=torch.bfloat16)["attention_mask"]
    assert mask.dtype == torch.bfloat16
    attend = block_causal_mask(batch["position_ids"])
    assert torch.equal(mask == 0, attend)
    assert torch.all(mask[~attend] == torch.finfo(torch.bfloat16).min)


def test_unsupported_implementation_and_inconsistent_batch_are_errors(packed_rows):
    batch = collate_packed(packed_rows)
    with pytest.raises(RadllmError, match="paged_attention.*not supported"):
        model_inputs_for_packed_batch(batch, "paged_attention")
    batch["cu_seqlens"] = batch["cu_seqlens"][:-1]
    with pytest.raises(ValueError, match="cu_seqlens ends at"):
        model_inputs_for_packed_batch(batch, "flash_attention_2")


def test_select_attention_implementation(monkeypatch):
    real_find_spec = packed_attention.importlib.util.find_spec
    if not torch.cuda.is_available():
        assert select_attention_implementation() == VARLEN_SDPA  # CPU: per-sample SDPA, no dense mask
    monkeypatch.setattr(packed_attention.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(packed_attention.importlib.util, "find_spec", lambda n, *a: None if n == "flash_attn" else real_find_spec(n, *a))
    assert select_attention_implementation() == "flex_attention"  # CUDA without flash-attn: no dense mask
    monkeypatch.setattr(packed_attention.importlib.util, "find_spec", lambda n, *a: object() if n == "flash_attn" else real_find_spec(n, *a))
    assert select_attention_implementation() == "flash_attention_2"
    monkeypatch.setattr(packed_attention.torch.cuda, "is_available", lambda: False)
    assert select_attention_implementation() == VARLEN_SDPA


def test_row_subset_is_the_best_fill_by_brute_force():
    from itertools import product

    from radllm.packing.rows import _best_subset

    rng = random.Random(6)
    for _ in range(60):
        counts = {rng.randint(1, 40): rng.randint(1, 4) for _ in range(rng.randint(1, 5))}
        room = rng.randint(1, 100)
        chosen = _best_subset(counts, room)
        assert all(0 < chosen[n] <= counts[n] for n in chosen)
        best = max(
            total
            for copies in product(*(range(c + 1) for c in counts.values()))
            if (total := sum(n * k for n, k in zip(counts, copies))) <= room
        )
        assert sum(n * k for n, k in chosen.items()) == best
    # ties go to the longer examples: 8 = 5 + 3 = 4 + 2 + 2; the 5 is used
    assert _best_subset({5: 1, 3: 1, 4: 1, 2: 2}, 8) == {5: 1, 3: 1}


def test_loss_weights_survive_packing_truncation_and_collation():
    weighted = prompt_response_example([1, 2], [3, 4, 5], "report_generation", "w", [2.0, 1.0, 0.5])
    plain = prompt_response_example([1], [6, 7], "text_lm", "p")
    assert plain.weights is None and weighted.weights == [0.0, 0.0, 2.0, 1.0, 0.5]
    rows = pack_examples([weighted, plain], seq_len=10, pad_id=0)
    (row,) = rows
    order = {key: i for i, key in enumerate(row.keys)}
    expected = {"w": weighted.weights, "p": [1.0, 1.0, 1.0]}
    assert row.weights == [w for key in sorted(order, key=order.get) for w in expected[key]] + [0.0, 0.0]
    batch = collate_packed(rows)
    assert batch["loss_weights"].tolist() == [row.weights]
    assert "loss_weights" not in collate_packed(pack_examples([plain], seq_len=4, pad_id=0))
    (cut,) = pack_examples([weighted], seq_len=4, pad_id=0, overflow="truncate")
    assert cut.weights == [0.0, 0.0, 2.0, 1.0]
