"""Reconstruction and codebook metrics of the VQ-GAN (evaluation, validation and benchmarks).

Image metrics take float tensors [B, C, H, W] in the [0, 1] convention and return one value per
image ([B]), so callers can average over a dataset or report per-study values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from radllm.vq.losses import image_gradients
from radllm.vq.quantizer import perplexity_from_counts, usage_from_counts

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two image batches of equal shape [B, C, H, W], got {list(x.shape)} and {list(y.shape)}")


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image: 10 log10(data_range^2 / MSE); inf if identical."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)  # [B]
    return (10.0 * torch.log10(data_range**2 / mse)).to(x.dtype)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()  # [size]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity per image (Wang et al. 2004), averaged over channels.

    Gaussian window 11 x 11 with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample)
    covariances, and the mean taken over positions where the window fits inside the image: the
    same definition as `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`, which the tests compare against.
    """
    _check_pair(x, y)
    B, C, H, W = x.shape
    if min(H, W) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {H} x {W}")
    g = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, x.device)
    # Separable Gaussian filter, 'valid' region only, applied per channel (depthwise).
    g_rows = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)  # [C, 1, 1, 11]
    g_cols = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)  # [C, 1, 11, 1]

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, g_rows, groups=C), g_cols, groups=C)  # [B, C, H-10, W-10]

    xd, yd = x.double(), y.double()
    mu_x, mu_y = blur(xd), blur(yd)
    var_x = blur(xd * xd) - mu_x**2
    var_y = blur(yd * yd) - mu_y**2
    cov = blur(xd * yd) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s_map.flatten(1).mean(dim=1).to(x.dtype)  # [B]


def gradient_magnitude_error(x: Tensor, y: Tensor, operator: str = "sobel") -> Tensor:
    """Mean absolute difference of gradient magnitudes per image: mean | |grad x| - |grad y| |.

    Measures how well edges (rib cortices, pleural lines, tubes) keep their strength, which PSNR
    hardly sees; the lambda_grad ablation benchmark reports it next to PSNR/SSIM.
    """
    _check_pair(x, y)
    gx_a, gy_a = image_gradients(x, operator)
    gx_b, gy_b = image_gradients(y, operator)
    mag_a = torch.sqrt(gx_a**2 + gy_a**2)
    mag_b = torch.sqrt(gx_b**2 + gy_b**2)
    return (mag_a - mag_b).abs().flatten(1).mean(dim=1)  # [B]


def code_histogram(codes: Tensor, codebook_size: int) -> Tensor:
    """Float [K] count of each code in an integer tensor of any shape."""
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size - 1}], got range [{int(codes.min())}, {int(codes.max())}]")
    return torch.bincount(codes.flatten().long(), minlength=codebook_size).float()


def codebook_usage(codes: Tensor, codebook_size: int) -> float:
    """Fraction of the codebook that occurs in `codes` (any shape)."""
    return float(usage_from_counts(code_histogram(codes, codebook_size)))


def code_perplexity(codes: Tensor, codebook_size: int) -> float:
    """Perplexity (exp of entropy, natural log) of the code histogram of `codes`."""
    return float(perplexity_from_counts(code_histogram(codes, codebook_size)))
