"""VectorQuantizer: nearest-code lookup, straight-through gradients, VQ losses, usage tracking and
dead-code revival, each checked against hand computations or a naive loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from radllm.errors import RadllmError
from radllm.vq.config import VQConfig
from radllm.vq.quantizer import VectorQuantizer


def make_quantizer(z_channels=3, codebook_dim=3, codebook_size=4, **kwargs) -> VectorQuantizer:
    config = VQConfig(image_size=32, base_channels=8, channel_mult=[1, 2], num_res_blocks=1, z_channels=z_channels, codebook_size=codebook_size, codebook_dim=codebook_dim, **kwargs)
    return VectorQuantizer(config)


def set_identity_projections(q: VectorQuantizer) -> None:
    with torch.no_grad():
        for conv in (q.proj_in, q.proj_out):
            conv.weight.copy_(torch.eye(q.codebook_dim).view(q.codebook_dim, q.codebook_dim, 1, 1))
            conv.bias.zero_()


def cells(*vectors) -> torch.Tensor:
    """Latent map [1, d, 1, n] whose n grid cells are the given d-vectors."""
    return torch.tensor(vectors, dtype=torch.float32).t().reshape(1, len(vectors[0]), 1, len(vectors))


AXES = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]


def test_hand_checked_nearest_code_with_identity_projections():
    q = make_quantizer()
    set_identity_projections(q)
    with torch.no_grad():
        # Lengths must not matter (cosine lookup): scale the entries arbitrarily.
        q.codebook.weight.copy_(torch.tensor(AXES) * torch.tensor([[2.0], [0.5], [7.0], [1.0]]))
    z = cells([3.0, 4.0, 0.0], [0.0, 0.0, 0.01], [-5.0, 1.0, 0.0], [100.0, -1.0, 20.0])
    out = q(z)
    # (3,4,0): cos 0.6 with e0, 0.8 with e1 -> 1; (0,0,.01) -> 2; (-5,1,0) -> 3; (100,-1,20) -> 0.
    assert out.codes.tolist() == [[[1, 2, 3, 0]]]
    assert out.codes.dtype == torch.int64
    # Forward value of z_q is the (normalised) code vector, not z.
    expected = cells(AXES[1], AXES[2], AXES[3], AXES[0])
    torch.testing.assert_close(out.z_q, expected)


def test_nearest_code_matches_naive_cosine_loop_with_random_projections():
    torch.manual_seed(0)
    q = make_quantizer(z_channels=5, codebook_dim=3, codebook_size=16)
    z = torch.randn(2, 5, 3, 4)
    codes = q(z).codes
    W = q.proj_in.weight.detach().view(3, 5).tolist()
    b = q.proj_in.bias.detach().tolist()
    book = q.codebook.weight.detach().tolist()
    for bi in range(2):
        for i in range(3):
            for j in range(4):
                v = [sum(W[o][c] * float(z[bi, c, i, j]) for c in range(5)) + b[o] for o in range(3)]
                best, best_cos = None, -2.0
                for k, e in enumerate(book):
                    cos = sum(a * c for a, c in zip(v, e)) / (math.sqrt(sum(a * a for a in v)) * math.sqrt(sum(c * c for c in e)))
                    if cos > best_cos:
                        best, best_cos = k, cos
                assert codes[bi, i, j].item() == best


def test_straight_through_gradient_equals_gradient_of_unquantized_path():
    torch.manual_seed(1)
    q = make_quantizer(z_channels=6, codebook_dim=4, codebook_size=8)
    z = torch.randn(2, 6, 3, 3, requires_grad=True)
    upstream = torch.randn(2, 6, 3, 3)
    (q(z).z_q * upstream).sum().backward()
    # Reference: the same network without the quantization step (identity in the backward pass).
    z_ref = z.detach().clone().requires_grad_(True)
    ref = q.proj_out(F.normalize(q.proj_in(z_ref), dim=1))
    (ref * upstream).sum().backward()
    assert z.grad.abs().sum() > 0
    torch.testing.assert_close(z.grad, z_ref.grad)


def test_z_q_sends_no_gradient_to_the_codebook():
    q = make_quantizer()
    z = torch.randn(1, 3, 2, 2)
    q(z).z_q.sum().backward()
    assert q.codebook.weight.grad is None or torch.count_nonzero(q.codebook.weight.grad) == 0


def test_codebook_and_commitment_losses_match_hand_computation():
    q = make_quantizer(commitment_beta=0.25)
    set_identity_projections(q)
    with torch.no_grad():
        q.codebook.weight.copy_(torch.tensor(AXES))
    z = cells([3.0, 4.0, 0.0], [0.0, 0.0, 2.0]).requires_grad_(True)
    out = q(z)
    # Cell 1: unit (0.6, 0.8, 0) vs code (0, 1, 0): squared error 0.36 + 0.04; cell 2 exact.
    mse = 0.40 / 6  # mean over 2 cells x 3 dims
    assert out.codebook_loss.item() == pytest.approx(mse, rel=1e-6)
    assert out.commitment_loss.item() == pytest.approx(0.25 * mse, rel=1e-6)
    # The codebook term moves only codes; the commitment term moves only the encoder output.
    grad_z = torch.autograd.grad(out.codebook_loss, z, retain_graph=True, allow_unused=True)[0]
    assert grad_z is None or torch.count_nonzero(grad_z) == 0
    grad_book = torch.autograd.grad(out.commitment_loss, q.codebook.weight, retain_graph=True, allow_unused=True)[0]
    assert grad_book is None or torch.count_nonzero(grad_book) == 0
    grad_book = torch.autograd.grad(out.codebook_loss, q.codebook.weight)[0]
    # d/d e1 of mean((e1/|e1| - u)^2) at e1 = (0,1,0): only the tangential part survives -> x-component.
    assert grad_book[1, 0].item() == pytest.approx(2 * (0.0 - 0.6) / 6, rel=1e-5)
    assert torch.count_nonzero(grad_book[[0, 3]]) == 0


def test_usage_and_perplexity_of_known_histogram():
    q = make_quantizer()
    set_identity_projections(q)
    with torch.no_grad():
        q.codebook.weight.copy_(torch.tensor(AXES))
    out = q(cells(AXES[0], AXES[0], AXES[1], AXES[2]))  # codes 0, 0, 1, 2; code 3 unused
    assert out.usage.item() == pytest.approx(3 / 4)
    # p = (1/2, 1/4, 1/4): entropy = 1.5 ln 2 -> perplexity 2 ** 1.5.
    assert out.perplexity.item() == pytest.approx(2**1.5, rel=1e-6)


def test_usage_ema_updates_in_training_mode_only():
    q = make_quantizer(usage_decay=0.9)
    set_identity_projections(q)
    with torch.no_grad():
        q.codebook.weight.copy_(torch.tensor(AXES))
    z = cells(AXES[0], AXES[0], AXES[1], AXES[2])
    q.eval()
    q(z)
    torch.testing.assert_close(q.usage_share, torch.full((4,), 0.25))
    q.train()
    q(z)
    share = torch.tensor([0.5, 0.25, 0.25, 0.0])
    torch.testing.assert_close(q.usage_share, 0.9 * 0.25 + 0.1 * share)


def test_dead_code_mask_threshold_is_relative_to_uniform_share():
    q = make_quantizer(codebook_size=4, dead_code_threshold=0.1)  # dead below 0.1 / 4 = 0.025
    q.usage_share.copy_(torch.tensor([0.5, 0.024, 0.026, 0.0]))
    assert q.dead_code_mask().tolist() == [False, True, False, True]


def test_revival_replaces_exactly_the_dead_codes():
    torch.manual_seed(2)
    q = make_quantizer(codebook_size=6, dead_code_threshold=0.5)
    q.usage_share.copy_(torch.tensor([0.3, 0.01, 0.3, 0.0, 0.39, 0.0]))  # dead: 1, 3, 5
    before = q.codebook.weight.detach().clone()
    candidates = torch.randn(10, 3)
    revived = q.revive_dead_codes(candidates, generator=torch.Generator().manual_seed(0))
    assert revived == 3
    after = q.codebook.weight.detach()
    torch.testing.assert_close(after[[0, 2, 4]], before[[0, 2, 4]], rtol=0, atol=0)
    picked = []
    for k in (1, 3, 5):
        matches = [i for i in range(10) if torch.equal(after[k], candidates[i])]
        assert len(matches) == 1
        picked.append(matches[0])
    assert len(set(picked)) == 3  # without replacement when enough candidates
    torch.testing.assert_close(q.usage_share[[1, 3, 5]], torch.full((3,), 1 / 6))
    assert not q.dead_code_mask().any()
    assert q.revive_dead_codes(candidates) == 0


def test_revived_code_is_chosen_for_its_candidate():
    q = make_quantizer(codebook_size=4, dead_code_threshold=0.5)
    z = torch.randn(1, 3, 2, 2)
    latents = q(z).latents  # [4, 3] normalised lookup vectors
    q.usage_share.copy_(torch.tensor([0.5, 0.5, 0.0, 0.0]))
    q.revive_dead_codes(latents[:1])  # one candidate for two dead codes: drawn with replacement
    torch.testing.assert_close(F.normalize(q.codebook.weight[2:], dim=1), latents[:1].expand(2, 3))
    assert q(z).codes.flatten()[0].item() in (2, 3)


def test_revival_rejects_wrong_candidate_shape():
    q = make_quantizer()
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        q.revive_dead_codes(torch.randn(5, 4))


def test_lookup_matches_forward_and_checks_range():
    torch.manual_seed(3)
    q = make_quantizer(z_channels=6, codebook_dim=4, codebook_size=8)
    out = q(torch.randn(2, 6, 3, 3))
    torch.testing.assert_close(q.lookup(out.codes), out.z_q)
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        q.lookup(torch.tensor([[[8]]]))
    with pytest.raises(ValueError, match="integer"):
        q.lookup(torch.zeros(1, 1, 1))


def test_config_rejects_bad_usage_settings():
    with pytest.raises(RadllmError, match="usage_decay"):
        make_quantizer(usage_decay=1.0)
    with pytest.raises(RadllmError, match="codebook_size"):
        make_quantizer(codebook_size=1)
