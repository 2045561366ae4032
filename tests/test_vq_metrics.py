"""Reconstruction and codebook metrics against hand-computed values and scikit-image."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from radllm.vq.metrics import code_perplexity, codebook_usage, gradient_magnitude_error, psnr, ssim


def test_psnr_by_hand():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] = 0.1  # MSE 0.01 -> 20 dB
    y[1, :, :2] = 0.5  # half the pixels off by 0.5: MSE 0.125 -> 10 log10(8)
    values = psnr(x, y)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(20.0, rel=1e-5)
    assert values[1].item() == pytest.approx(10 * math.log10(8), rel=1e-5)
    assert psnr(x * 255, y * 255, data_range=255.0)[0].item() == pytest.approx(20.0, rel=1e-5)
    assert math.isinf(psnr(x, x)[0].item())


def skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(
        a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_ssim_matches_scikit_image(shape):
    gen = torch.Generator().manual_seed(0)
    H, W = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    smooth = (0.5 + 0.4 * torch.sin(6 * xx) * torch.cos(4 * yy)).expand(3, 1, H, W)
    noise = torch.rand(3, 1, H, W, generator=gen)
    x = smooth.clone()
    y = torch.stack([smooth[0] + 0.05 * (noise[0] - 0.5), 1.0 - smooth[1], noise[2]])  # mild, inverted, unrelated
    values = ssim(x, y)
    assert values.shape == (3,)
    for i in range(3):
        assert values[i].item() == pytest.approx(skimage_ssim(x[i, 0], y[i, 0]), abs=1e-3)
    assert ssim(x, x)[0].item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_averages_channels_and_rejects_small_images():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 2, 16, 16, generator=gen), torch.rand(1, 2, 16, 16, generator=gen)
    expected = np.mean([skimage_ssim(x[0, c], y[0, c]) for c in range(2)])
    assert ssim(x, y)[0].item() == pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="11 x 11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="equal shape"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 15))


def test_gradient_magnitude_error_by_hand():
    flat = torch.zeros(1, 1, 4, 4)
    ramp = torch.tensor([0.0, 0.1, 0.2, 0.3]).expand(1, 1, 4, 4)
    # Forward differences: |grad| = 0.1 in the first three columns, 0 in the last: 12 * 0.1 / 16.
    fd = gradient_magnitude_error(flat, ramp, "finite_difference")
    assert fd.shape == (1,) and fd.item() == pytest.approx(0.075, rel=1e-5)
    # Sobel/8: 0.05 at the two border columns, 0.1 inside: (2 * 0.05 + 2 * 0.1) / 4.
    assert gradient_magnitude_error(flat, ramp, "sobel").item() == pytest.approx(0.075, rel=1e-5)
    # A brightness offset keeps every edge: zero error.
    assert gradient_magnitude_error(ramp, ramp + 0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_codebook_usage_and_perplexity_of_known_histogram():
    codes = torch.tensor([[0, 0, 1, 2], [2, 2, 2, 2]])  # counts: 0->2, 1->1, 2->5 of 8; K = 10
    assert codebook_usage(codes, 10) == pytest.approx(0.3)
    p = np.array([2, 1, 5]) / 8
    assert code_perplexity(codes, 10) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert code_perplexity(torch.arange(16), 16) == pytest.approx(16.0, rel=1e-5)
    assert code_perplexity(torch.full((5,), 3), 16) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        codebook_usage(torch.tensor([10]), 10)
