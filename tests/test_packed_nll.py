"""Per-example NLL over packed rows (radllm.modeling.packed_nll) and the per-token loss it cuts
(radllm.packing.token_nll), against hand-computed values and each example run alone, unpacked."""

from __future__ import annotations

import math
import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.errors import RadllmError
from radllm.modeling.packed_attention import VARLEN_SDPA
from radllm.modeling.packed_nll import PackedScoring, forwards_per_rank, per_example_nll, segment_sums
from radllm.packing import causal_lm_loss, pack_examples, token_nll
from radllm.tasks.example import IGNORE_INDEX, TaskExample

PAD = 0
VOCAB = 200


def test_token_nll_puts_each_loss_at_its_label_hand_computed():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [9.0, 9.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 1, 0]])
    # label 1 at t=1 is predicted by position 0 with p = 1/2; label 0 at t=2 by position 1 with p = 3/4
    assert token_nll(logits, labels)[0].tolist() == pytest.approx([0.0, math.log(2.0), math.log(4.0 / 3.0)])
    assert token_nll(logits, torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 0]]))[0].tolist() == pytest.approx([0.0, 0.0, math.log(4.0 / 3.0)])
    sum_loss, n = causal_lm_loss(logits, labels)  # the summed loss is the same per-token values
    assert float(sum_loss) == pytest.approx(math.log(2.0) + math.log(4.0 / 3.0)) and int(n) == 2
    with pytest.raises(ValueError, match="disagree"):
        token_nll(logits, labels[:, :2])


def test_segment_sums_cut_at_the_boundaries():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert segment_sums(values, torch.tensor([0, 2, 3, 6], dtype=torch.int32)).tolist() == [3.0, 3.0, 15.0]


def random_examples(n: int, seed: int) -> list[TaskExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(3, 30)
        prompt = rng.randint(1, length - 1)
        ids = [1] + [rng.randrange(3, VOCAB) for _ in range(length - 1)]
        labels = [IGNORE_INDEX] * prompt + ids[prompt:]
        if length - prompt > 1:
            labels[rng.randrange(prompt, length)] = IGNORE_INDEX  # a hole in the targets
        out.append(TaskExample(ids, labels, "t", f"study{i % 4}"))  # keys repeat: identity must not rely on them
    return out


def naive_nll(model: LlamaForCausalLM, example: TaskExample) -> tuple[float, int]:
    """The example alone, unpacked and unpadded: Σ −log softmax(logits[t−1])[label[t]] over its targets."""
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=torch.tensor([example.input_ids])).logits[0].double(), dim=-1)
    terms = [-float(log_probs[t - 1, label]) for t, label in enumerate(example.labels) if t > 0 and label != IGNORE_INDEX]
    return sum(terms), len(terms)


class CountingModel:
    """A model wrapper that counts forwards (what ZeRO-3 needs to match across ranks)."""

    def __init__(self, model: LlamaForCausalLM) -> None:
        self.model, self.calls = model, 0

    def __call__(self, **kwargs):
        self.calls += 1
        return self.model(**kwargs)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", VARLEN_SDPA])
def test_per_example_nll_equals_each_example_run_alone(tiny_model, attn_implementation):
    tiny_model.config._attn_implementation = attn_implementation
    examples = random_examples(13, seed=3)
    rows = pack_examples(examples, 48, PAD)
    assert len(rows) >= 3 and any(len(row.seq_lens) >= 3 for row in rows) and any(row.n_pad for row in rows)
    sums, counts = per_example_nll(tiny_model, examples, PAD, PackedScoring(attn_implementation, tokens_per_row=48, rows_per_batch=2))
    expected = [naive_nll(tiny_model, e) for e in examples]
    assert sums.tolist() == pytest.approx([s for s, _ in expected], abs=2e-5)
    assert counts.tolist() == [n for _, n in expected]


def test_ranks_score_disjoint_rows_in_the_same_number_of_forwards(tiny_model):
    tiny_model.config._attn_implementation = "sdpa"
    examples = random_examples(13, seed=3)
    single = per_example_nll(tiny_model, examples, PAD, PackedScoring("sdpa", tokens_per_row=48, rows_per_batch=2))
    n_rows = len(pack_examples(examples, 48, PAD))
    world = 3
    assert n_rows % world != 0  # one rank runs a lockstep forward without rows of its own
    total_sums, total_counts, calls = torch.zeros(len(examples), dtype=torch.float64), torch.zeros(len(examples), dtype=torch.float64), []
    for rank in range(world):
        model = CountingModel(tiny_model)
        scoring = PackedScoring("sdpa", tokens_per_row=48, rows_per_batch=2, rank=rank, world_size=world)
        sums, counts = per_example_nll(model, examples, PAD, scoring)
        assert not ((counts > 0) & (total_counts > 0)).any()  # every example is scored by one rank only
        total_sums, total_counts = total_sums + sums, total_counts + counts
        calls.append(model.calls)
    assert calls == [forwards_per_rank(n_rows, scoring)] * world == [math.ceil(math.ceil(n_rows / world) / 2)] * world
    torch.testing.assert_close(total_sums, single[0], rtol=0, atol=1e-6)
    assert torch.equal(total_counts, single[1])


def test_examples_longer_than_a_row_are_scored_whole_and_bad_layouts_fail(tiny_model):
    tiny_model.config._attn_implementation = "sdpa"
    examples = random_examples(5, seed=9)
    sums, counts = per_example_nll(tiny_model, examples, PAD, PackedScoring("sdpa", tokens_per_row=4, rows_per_batch=1))
    assert counts.tolist() == [naive_nll(tiny_model, e)[1] for e in examples]
    assert per_example_nll(tiny_model, [], PAD, PackedScoring("sdpa"))[0].numel() == 0
    with pytest.raises(RadllmError, match="rows_per_batch = 0"):
        PackedScoring("sdpa", rows_per_batch=0)
    with pytest.raises(RadllmError, match="rank 2 is not in a world of 2"):
        PackedScoring("sdpa", rank=2, world_size=2)
