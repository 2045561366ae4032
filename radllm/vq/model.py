"""The VQ-GAN image tokenizer: convolutional encoder, vector quantizer, convolutional decoder.

An image [B, 1, H, W] in [0, 1] becomes a grid of codes [B, H/f, W/f] (f = 2 ** (levels - 1)),
the image tokens the LLM reads and writes; `decode_codes` turns generated codes back into pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radllm.vq.config import VQConfig
from radllm.vq.quantizer import QuantizerOutput, VectorQuantizer
from radllm.vq.tokenizer import SquareGridSizes


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups; fewer when a (tiny test) width is not divisible by 32."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, 3x3 conv) twice, 1x1 skip if widths differ."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions: global context at the lowest resolution
    (left/right symmetry, heart size relative to the thorax) that 3x3 convolutions cannot see."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # 3 x [B, H*W, C]
        h = F.scaled_dot_product_attention(q, k, v)  # [B, H*W, C]
        h = h.transpose(1, 2).reshape(B, C, H, W)
        return x + self.proj(h)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: [B, C, H, W] -> [B, C, H/2, W/2]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then 3x3 convolution (no checkerboard artefacts of transposed convs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # [B, C, 2H, 2W]


class MidBlock(nn.Module):
    """ResBlock, self-attention, ResBlock at the lowest resolution (shape-preserving)."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.res1 = ResBlock(channels, channels, dropout)
        self.attn = AttnBlock(channels)
        self.res2 = ResBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.res2(self.attn(self.res1(x)))


class Encoder(nn.Module):
    """[B, in_channels, H, W] in [-1, 1] -> [B, z_channels, H/f, W/f]."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mult]
        self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.levels = nn.ModuleList()
        width = widths[0]
        for i, out_width in enumerate(widths):
            blocks: list[nn.Module] = []
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(width, out_width, config.dropout))
                width = out_width
            if i < len(widths) - 1:
                blocks.append(Downsample(width))
            self.levels.append(nn.Sequential(*blocks))
        self.mid = MidBlock(width, config.dropout)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, config.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)  # [B, base*mult[0], H, W]
        for level in self.levels:
            h = level(h)  # halves H, W on every level but the last
        h = self.mid(h)  # [B, base*mult[-1], H/f, W/f]
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, z_channels, H/f, W/f]


class Decoder(nn.Module):
    """[B, z_channels, h, w] -> [B, in_channels, h*f, w*f] (in [-1, 1] when trained, unclamped)."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mult]
        width = widths[-1]
        self.conv_in = nn.Conv2d(config.z_channels, width, 3, padding=1)
        self.mid = MidBlock(width, config.dropout)
        self.levels = nn.ModuleList()
        for i, out_width in reversed(list(enumerate(widths))):
            blocks: list[nn.Module] = []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock(width, out_width, config.dropout))
                width = out_width
            if i > 0:
                blocks.append(Upsample(width))
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, config.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))  # [B, base*mult[-1], h, w]
        for level in self.levels:
            h = level(h)  # doubles h, w on every level but the last
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, in_channels, h*f, w*f]


@dataclass
class VQOutput:
    """Result of a training forward pass."""

    reconstruction: Tensor  # [B, 1, H, W] in the [0, 1] convention, unclamped
    quantizer: QuantizerOutput


class VQModel(SquareGridSizes, nn.Module):
    """Encoder -> VectorQuantizer -> Decoder, with images in [0, 1] at the interface.

    Internally pixels are mapped to [-1, 1] (zero-centred inputs and a symmetric output range
    suit the GroupNorm/SiLU stack); outputs are mapped back to [0, 1].
    """

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantizer(config)
        self.decoder = Decoder(config)

    def _check_images(self, x: Tensor) -> None:
        f = self.config.downsample
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"expected images [B, {self.config.in_channels}, H, W] with H and W multiples of {f}, got shape {list(x.shape)}")

    def forward(self, x: Tensor) -> VQOutput:
        """Reconstruct `x` [B, 1, H, W] in [0, 1] through the codebook (straight-through)."""
        self._check_images(x)
        z = self.encoder(x * 2.0 - 1.0)  # [B, z_channels, H/f, W/f]
        quant = self.quantizer(z)
        x_hat = self.decoder(quant.z_q)  # [B, 1, H, W] in [-1, 1] scale
        return VQOutput(reconstruction=(x_hat + 1.0) / 2.0, quantizer=quant)

    def encode(self, x: Tensor) -> Tensor:
        """Image tokens of `x` [B, 1, H, W] in [0, 1]: int64 codes [B, H/f, W/f].

        Tokenize with the model in eval mode (as `load_vq` returns it): in training mode every
        call also updates the codebook-usage statistics.
        """
        self._check_images(x)
        return self.quantizer(self.encoder(x * 2.0 - 1.0)).codes

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Images [B, 1, h*f, w*f] in [0, 1] (clamped) from integer codes [B, h, w]."""
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, h, w], got shape {list(codes.shape)}")
        x_hat = self.decoder(self.quantizer.lookup(codes))  # [B, 1, h*f, w*f] in [-1, 1] scale
        return ((x_hat + 1.0) / 2.0).clamp(0.0, 1.0)

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebook.weight.device

    @property
    def last_decoder_layer(self) -> Tensor:
        """Weight of the decoder's output convolution (where the adaptive GAN weight is measured)."""
        return self.decoder.conv_out.weight
