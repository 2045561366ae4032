"""Loss terms of the clinical VQ-GAN against hand-computed values and independent references."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from radllm.errors import RadllmError
from radllm.vq.config import VQLossConfig
from radllm.vq.losses import (
    ClinicalVQLoss,
    adaptive_gan_weight,
    feature_loss,
    finding_loss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    image_gradients,
    l1_loss,
)
from radllm.vq.quantizer import QuantizerOutput


def image(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).view(1, 1, len(rows), len(rows[0]))


X44 = [[0.0, 1.0, 3.0, 6.0], [2.0, 2.0, 2.0, 2.0], [5.0, 4.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]


def test_finite_differences_by_hand():
    gx, gy = image_gradients(image(X44), "finite_difference")
    # Forward differences; the last column / row is zero (replicate padding).
    assert gx[0, 0].tolist() == [[1, 2, 3, 0], [0, 0, 0, 0], [-1, -4, 1, 0], [0, 0, 0, 0]]
    assert gy[0, 0].tolist() == [[2, 1, -1, -4], [3, 2, -2, -1], [-4, -3, 1, 0], [0, 0, 0, 0]]


def test_sobel_on_a_ramp_by_hand_and_against_scipy():
    ramp = image([[0.0, 1.0, 2.0, 3.0]] * 4)
    gx, gy = image_gradients(ramp, "sobel")
    # Unit slope inside; half at the replicate-padded borders; no vertical gradient.
    assert gx[0, 0].tolist() == [[0.5, 1.0, 1.0, 0.5]] * 4
    assert torch.count_nonzero(gy) == 0
    x = image(X44)
    gx, gy = image_gradients(x, "sobel")
    # scipy's Sobel with mode='nearest' is the same replicate-padded operator, unnormalised.
    ref_x = scipy.ndimage.sobel(np.array(X44), axis=1, mode="nearest") / 8
    ref_y = scipy.ndimage.sobel(np.array(X44), axis=0, mode="nearest") / 8
    np.testing.assert_allclose(gx[0, 0].numpy(), ref_x, atol=1e-6)
    np.testing.assert_allclose(gy[0, 0].numpy(), ref_y, atol=1e-6)


def test_gradient_penalty_of_an_impulse_by_hand():
    zeros = torch.zeros(1, 1, 4, 4)
    impulse = zeros.clone()
    impulse[0, 0, 1, 1] = 1.0
    # Forward differences: gx = +1 at (1,0), -1 at (1,1); gy = +1 at (0,1), -1 at (1,1): 4 / 16.
    assert gradient_penalty(zeros, impulse, "finite_difference").item() == pytest.approx(4 / 16)
    # Sobel/8: every kernel entry appears once per direction: 2 * (1+4+1+1+4+1) / 64 / 16 pixels.
    assert gradient_penalty(zeros, impulse, "sobel").item() == pytest.approx(24 / 64 / 16)


def test_gradient_penalty_zero_for_identical_and_for_brightness_shift():
    x = torch.rand(2, 1, 8, 8)
    for op in ("sobel", "finite_difference"):
        assert gradient_penalty(x, x.clone(), op).item() == 0.0
        # A constant offset changes L1 but no gradient: the term only sees edges.
        assert gradient_penalty(x, x + 0.3, op).item() == pytest.approx(0.0, abs=1e-12)


def test_unknown_gradient_operator_is_a_clear_error():
    with pytest.raises(RadllmError, match="laplace"):
        image_gradients(torch.zeros(1, 1, 4, 4), "laplace")
    with pytest.raises(RadllmError, match="grad_operator"):
        VQLossConfig(grad_operator="laplace")


def test_l1_by_hand():
    a = image([[0.0, 1.0], [0.5, 0.5]])
    b = image([[1.0, 1.0], [0.0, 0.75]])
    assert l1_loss(a, b).item() == pytest.approx((1 + 0 + 0.5 + 0.25) / 4)


def test_hinge_losses_signs_and_values():
    assert hinge_d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0
    # 0.5 * (mean(relu(1 - [0.5, 2])) + mean(relu(1 + [0, -3]))) = 0.5 * (0.25 + 0.5)
    assert hinge_d_loss(torch.tensor([0.5, 2.0]), torch.tensor([0.0, -3.0])).item() == pytest.approx(0.375)
    assert hinge_g_loss(torch.tensor([0.5, -1.5, 4.0])).item() == pytest.approx(-1.0)
    # The generator gains (loss falls) when D rates its output as more real.
    assert hinge_g_loss(torch.tensor([2.0])) < hinge_g_loss(torch.tensor([1.0]))


def test_adaptive_weight_is_the_hand_computed_grad_norm_ratio():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    rec = 3 * w[0] + 4 * w[1]  # grad (3, 4): norm 5
    gan = (w**2).sum()  # grad 2w = (2, -4): norm sqrt(20)
    weight = adaptive_gan_weight(rec, gan, w)
    assert weight.item() == pytest.approx(5 / (20**0.5 + 1e-4), rel=1e-6)
    assert not weight.requires_grad
    # Graphs are kept for the real backward pass.
    rec.backward()
    # Vanishing GAN gradient: clamped to max_weight.
    w2 = torch.tensor([1.0], requires_grad=True)
    assert adaptive_gan_weight(5 * w2.sum(), 0 * w2.sum(), w2, max_weight=100.0).item() == 100.0


class TinyFeatures(nn.Module):
    """Fixed two-layer 'CXR encoder': a 2-channel conv map and its 2x2 average pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.linspace(-1, 1, 18).view(2, 1, 3, 3))
            self.conv.bias.copy_(torch.tensor([0.1, -0.2]))

    def features(self, x):
        f1 = torch.relu(self.conv(x)) + 0.01
        return [f1, nn.functional.avg_pool2d(f1, 2)]

    def classify_features(self, maps):
        """Two 'findings': the mean and the max of the last map's channels, shifted."""
        last = maps[-1]
        return torch.stack([last.mean(dim=(1, 2, 3)) - 0.3, last.amax(dim=(1, 2, 3)) - 0.5], dim=1)


def naive_feature_loss(fa, fb):
    total = 0.0
    for a, b in zip(fa, fb):
        a, b = a.detach().numpy(), b.detach().numpy()
        B, C, H, W = a.shape
        acc = 0.0
        for n in range(B):
            for i in range(H):
                for j in range(W):
                    va, vb = a[n, :, i, j], b[n, :, i, j]
                    acc += float(((vb / np.linalg.norm(vb) - va / np.linalg.norm(va)) ** 2).sum())
        total += acc / (B * H * W)
    return total / len(fa)


def test_feature_loss_matches_naive_loop_and_trains_only_x_hat():
    torch.manual_seed(0)
    enc = TinyFeatures().requires_grad_(False)
    x = torch.rand(2, 1, 6, 6)
    x_hat = torch.rand(2, 1, 6, 6, requires_grad=True)
    loss = feature_loss(enc.features(x), enc.features(x_hat))
    assert loss.item() == pytest.approx(naive_feature_loss(enc.features(x_hat), enc.features(x)), rel=1e-5)
    loss.backward()
    assert x_hat.grad.abs().sum() > 0
    assert feature_loss(enc.features(x), enc.features(x.clone())).item() == pytest.approx(0.0, abs=1e-10)


def naive_bernoulli_kl(target_logits, predicted_logits):
    total, n = 0.0, 0
    for a, b in zip(target_logits.flatten().tolist(), predicted_logits.flatten().tolist()):
        p, q = 1 / (1 + math.exp(-a)), 1 / (1 + math.exp(-b))
        total += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
        n += 1
    return total / n


def test_finding_loss_is_the_mean_bernoulli_kl_and_zero_when_findings_agree():
    target = torch.tensor([[2.0, -1.0, 0.0], [-3.0, 4.0, 0.5]])
    predicted = torch.tensor([[0.5, -2.0, 1.0], [-3.0, -4.0, 0.5]], requires_grad=True)
    loss = finding_loss(target, predicted)
    assert loss.item() == pytest.approx(naive_bernoulli_kl(target, predicted), rel=1e-5)
    loss.backward()
    assert predicted.grad[1, 0].abs() < 1e-7 and predicted.grad[1, 2].abs() < 1e-7  # equal logits: no pull
    assert predicted.grad[1, 1] < 0  # a lost finding is pushed back up
    assert finding_loss(target, target.clone()).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="differ in shape"):
        finding_loss(target, target[:, :2])


def fake_quant(codebook=0.2, commitment=0.05) -> QuantizerOutput:
    zero = torch.zeros(())
    return QuantizerOutput(
        z_q=torch.zeros(1, 1, 1, 1), codes=torch.zeros(1, 1, 1, dtype=torch.long), codebook_loss=torch.tensor(codebook),
        commitment_loss=torch.tensor(commitment), perplexity=zero, usage=zero, latents=torch.zeros(1, 1),
    )


class CountingDisc(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x)


def reconstruction_graph():
    """A toy 'decoder' (one conv) so the adaptive weight has a last layer to differentiate."""
    torch.manual_seed(0)
    last = nn.Conv2d(1, 1, 3, padding=1)
    x = torch.rand(2, 1, 8, 8)
    x_hat = last(torch.rand(2, 1, 8, 8))
    return x, x_hat, last.weight


def test_gan_terms_are_zero_before_disc_start_and_disc_not_run():
    loss = ClinicalVQLoss(VQLossConfig(disc_start_step=100, grad_weight=2.0, codebook_weight=0.5))
    disc = CountingDisc()
    x, x_hat, w = reconstruction_graph()
    total, m = loss.generator_loss(x, x_hat, fake_quant(), step=99, last_layer_weight=w, disc=disc)
    assert disc.calls == 0
    assert m["gan"] == 0.0 and m["gan_weight_effective"] == 0.0
    assert m["feature"] == 0.0 and m["finding"] == 0.0 and m["feature_enabled"] == 0.0
    expected = l1_loss(x, x_hat) + 2.0 * gradient_penalty(x, x_hat, "sobel") + 0.5 * (0.2 + 0.05)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert m["total"] == pytest.approx(total.item())
    d_loss, dm = loss.discriminator_loss(x, x_hat, step=99, disc=disc)
    assert d_loss.item() == 0.0 and dm["d_active"] == 0.0 and disc.calls == 0
    assert not loss.gan_active(99) and loss.gan_active(100)


def test_gan_terms_after_disc_start_use_adaptive_weight():
    cfg = VQLossConfig(disc_start_step=10, gan_weight=0.3, grad_weight=1.0, feature_weight=0.0)
    loss = ClinicalVQLoss(cfg)
    disc = CountingDisc()
    x, x_hat, w = reconstruction_graph()
    total, m = loss.generator_loss(x, x_hat, fake_quant(), step=10, last_layer_weight=w, disc=disc)
    assert disc.calls == 1
    rec = l1_loss(x, x_hat) + gradient_penalty(x, x_hat, "sobel")
    gan = hinge_g_loss(disc(x_hat))
    adaptive = adaptive_gan_weight(rec, gan, w).item()
    assert m["gan"] == pytest.approx(gan.item(), rel=1e-6)
    assert m["gan_weight_effective"] == pytest.approx(0.3 * adaptive, rel=1e-5)
    assert total.item() == pytest.approx(rec.item() + 0.25 + 0.3 * adaptive * gan.item(), rel=1e-5)
    total.backward()  # the graph survives the adaptive-weight computation
    assert w.grad is not None


def test_fixed_gan_weight_and_no_grad_validation():
    x, x_hat, w = reconstruction_graph()
    disc = CountingDisc()
    fixed = ClinicalVQLoss(VQLossConfig(disc_start_step=0, gan_weight=0.3, adaptive_gan_weight=False))
    _, m = fixed.generator_loss(x, x_hat, fake_quant(), 0, w, disc)
    assert m["gan_weight_effective"] == pytest.approx(0.3)
    adaptive = ClinicalVQLoss(VQLossConfig(disc_start_step=0, gan_weight=0.3))
    with torch.no_grad():
        _, m = adaptive.generator_loss(x, x_hat.detach(), fake_quant(), 0, w, disc)
    assert m["gan_weight_effective"] == pytest.approx(0.3)


def test_discriminator_loss_detaches_inputs_and_matches_hinge():
    x, x_hat, w = reconstruction_graph()
    disc = CountingDisc()
    loss = ClinicalVQLoss(VQLossConfig(disc_start_step=0))
    d_loss, m = loss.discriminator_loss(x, x_hat, step=0, disc=disc)
    assert d_loss.item() == pytest.approx(hinge_d_loss(disc(x), disc(x_hat)).item(), rel=1e-6)
    assert m["d_active"] == 1.0 and m["d_loss"] == pytest.approx(d_loss.item())
    d_loss.backward()
    assert w.grad is None  # no gradient reaches the generator from the discriminator loss
    assert disc.conv.weight.grad is not None


def test_feature_term_enabled_with_encoder():
    torch.manual_seed(0)
    enc = TinyFeatures()
    loss = ClinicalVQLoss(VQLossConfig(feature_weight=0.5, grad_weight=0.0), feature_encoder=enc)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    x, x_hat, w = reconstruction_graph()
    total, m = loss.generator_loss(x, x_hat, fake_quant(0.0, 0.0), 0, w, None)
    feat = feature_loss(enc.features(x), enc.features(x_hat)).item()
    assert m["feature_enabled"] == 1.0 and m["feature"] == pytest.approx(feat, rel=1e-6)
    assert m["finding"] == 0.0  # finding_weight 0: the term is not computed
    assert total.item() == pytest.approx(l1_loss(x, x_hat).item() + 0.5 * feat, rel=1e-6)


def test_finding_term_adds_the_weighted_kl_of_the_encoder_findings():
    torch.manual_seed(0)
    enc = TinyFeatures()
    loss = ClinicalVQLoss(VQLossConfig(feature_weight=0.5, finding_weight=3.0, grad_weight=0.0), feature_encoder=enc)
    x, x_hat, w = reconstruction_graph()
    total, m = loss.generator_loss(x, x_hat, fake_quant(0.0, 0.0), 0, w, None)
    fx, fx_hat = enc.features(x), enc.features(x_hat)
    kl = naive_bernoulli_kl(enc.classify_features(fx), enc.classify_features(fx_hat))
    assert m["finding"] == pytest.approx(kl, rel=1e-5) and kl > 0
    assert total.item() == pytest.approx(l1_loss(x, x_hat).item() + 0.5 * feature_loss(fx, fx_hat).item() + 3.0 * kl, rel=1e-5)
    total.backward()
    assert w.grad is not None and not any(p.grad is not None for p in enc.parameters())
