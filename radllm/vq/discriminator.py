"""PatchGAN discriminator: one real/fake logit per overlapping image patch.

Normalisation choice: spectral norm on every convolution, no BatchNorm. BatchNorm statistics
would differ between the all-real and all-fake batches the hinge loss feeds separately, depend on
the (small, at radiograph resolutions) per-GPU batch size and need SyncBatchNorm under data
parallelism; spectral norm bounds each layer's Lipschitz constant per sample instead, which is
what keeps a hinge-loss discriminator from overpowering the decoder.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """Strided 4x4 convolutions (halving `n_layers` times), then two stride-1 layers to 1 channel.

    Takes images [B, in_channels, H, W] in the [0, 1] convention (mapped to [-1, 1] inside) and
    returns logits [B, 1, h, w]; for 256 px and 3 layers the map is 30 x 30 with a receptive
    field of 70 px.
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(in_channels, channels, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, n_layers + 1):
            new_width = channels * min(2**i, 8)
            stride = 2 if i < n_layers else 1  # the last widening layer keeps the resolution
            layers += [spectral_norm(nn.Conv2d(width, new_width, 4, stride=stride, padding=1)), nn.LeakyReLU(0.2)]
            width = new_width
        layers.append(spectral_norm(nn.Conv2d(width, 1, 4, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * 2.0 - 1.0)  # [B, 1, h, w] logits
