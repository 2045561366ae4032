"""Typed configs of the VQ-GAN image tokenizer (architecture) and of its clinical training loss.

`VQConfig` fully determines a `VQModel`'s shapes; it is stored as `config.json` next to the
weights, so a checkpoint can be rebuilt without the training config. `VQLossConfig` only matters
while training. Model sizes are named presets (`VQ_PRESETS`), referred to by name in run configs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from radllm.errors import RadllmError

GRAD_OPERATORS = ("sobel", "finite_difference")


@dataclass
class VQConfig:
    """Architecture of the VQ-GAN: encoder/decoder widths, code grid and codebook.

    The encoder halves the resolution `len(channel_mult) - 1` times, so `[1, 1, 2, 2, 4]` gives a
    downsampling factor of 16 (a 256-px image becomes a 16x16 code grid) and four entries give 8.
    """

    image_size: int = 256  # pixels per side (square images, [B, 1, H, W] in [0, 1])
    in_channels: int = 1  # grayscale radiographs
    base_channels: int = 64  # width of the first encoder level; level i has base * channel_mult[i]
    channel_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2  # residual blocks per encoder level (decoder uses one more)
    z_channels: int = 256  # encoder output / decoder input channels
    codebook_size: int = 1024  # K: number of codes = number of image tokens in the LLM vocabulary
    codebook_dim: int = 8  # low-dimensional, l2-normalised lookup space (LlamaGen): high code usage
    commitment_beta: float = 0.25  # weight of the commitment term inside the quantizer output
    usage_decay: float = 0.99  # EMA decay of each code's share of assignments (usage tracking)
    # A code is "dead" when its EMA share of assignments falls below
    # dead_code_threshold / codebook_size, i.e. this fraction of what uniform use would give it.
    dead_code_threshold: float = 0.01
    dropout: float = 0.0  # dropout inside residual blocks

    def __post_init__(self) -> None:
        def fail(key: str, expected: str) -> None:
            raise RadllmError(f"VQ config: {key}={getattr(self, key)!r}, expected {expected}")

        self.channel_mult = [int(m) for m in self.channel_mult]
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            fail("channel_mult", "a non-empty list of positive integers")
        for key in ("image_size", "in_channels", "base_channels", "z_channels", "codebook_dim"):
            if getattr(self, key) < 1:
                fail(key, "a positive integer")
        if self.num_res_blocks < 0:
            fail("num_res_blocks", "a non-negative integer")
        if self.codebook_size < 2:
            fail("codebook_size", "at least 2")
        if self.image_size % self.downsample:
            fail("image_size", f"a multiple of the downsampling factor {self.downsample} (2 ** (len(channel_mult) - 1))")
        if self.commitment_beta < 0:
            fail("commitment_beta", "a non-negative number")
        if not 0.0 < self.usage_decay < 1.0:
            fail("usage_decay", "a number strictly between 0 and 1")
        if not 0.0 <= self.dead_code_threshold < 1.0:
            fail("dead_code_threshold", "a number in [0, 1) (fraction of the uniform share 1/codebook_size)")
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", "a number in [0, 1)")

    @property
    def downsample(self) -> int:
        """Spatial reduction factor from pixels to code grid."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def grid_size(self) -> int:
        """Code-grid side length: an image becomes grid_size x grid_size tokens."""
        return self.image_size // self.downsample


@dataclass
class VQLossConfig:
    """Weights and schedule of the clinical composite loss (see `radllm.vq.losses.ClinicalVQLoss`).

    total = l1_weight * L1 + grad_weight * ||grad x - grad x_hat||^2 + feature_weight * feature
            + finding_weight * finding + codebook_weight * (codebook + commitment)
            + gan_weight * adaptive * hinge_G
    """

    l1_weight: float = 1.0
    # lambda_grad: weight of the squared difference of image gradients (edges: ribs, lines,
    # pneumothorax margins), which L1 alone blurs. The squared term is ~10x smaller than L1 at
    # initialisation, so 10 puts the two on one scale. Measured on 32-px synthetic chest-like
    # images (tiny model, 400 Adam steps, no GAN), test PSNR: lambda 0 / 1 / 10 -> 21.4 / 22.4 /
    # 27.1 dB (seed 0); lambda 0 / 3 / 10 / 30 -> 21.5 / 23.2 / 26.8 / 28.0 dB (seed 1); the
    # gradient-magnitude error fell alike (0.021 at lambda 0, 0.012 at 10, 0.011 at 30).
    # Re-tune on real radiographs with the lambda_grad ablation benchmark.
    grad_weight: float = 10.0
    grad_operator: str = "sobel"  # "sobel" | "finite_difference"
    feature_weight: float = 0.1  # only used when a frozen CXR feature encoder is given
    # Match of the frozen CXR encoder's per-finding logits on x and x_hat (Bernoulli KL, no labels
    # needed): keeps thin findings the feature term lets go. On the demo phantoms the feature term
    # alone gave reconstructions on which the classifier found support devices at chance (AUROC
    # 0.51 against 1.00 on the originals). Only used with a CXR encoder; 0 switches it off.
    finding_weight: float = 0.0
    codebook_weight: float = 1.0
    gan_weight: float = 0.1
    disc_start_step: int = 2000  # GAN terms are exactly zero before this optimizer step
    adaptive_gan_weight: bool = True  # scale GAN grads to the reconstruction grads at the last layer
    adaptive_weight_max: float = 1e4  # clamp of the adaptive factor (it explodes when GAN grads vanish)
    disc_channels: int = 64
    disc_layers: int = 3

    def __post_init__(self) -> None:
        if self.grad_operator not in GRAD_OPERATORS:
            raise RadllmError(f"VQ loss config: grad_operator={self.grad_operator!r}, expected one of {list(GRAD_OPERATORS)}")
        for key in ("l1_weight", "grad_weight", "feature_weight", "finding_weight", "codebook_weight", "gan_weight"):
            if getattr(self, key) < 0:
                raise RadllmError(f"VQ loss config: {key}={getattr(self, key)!r}, expected a non-negative number")
        if self.disc_start_step < 0:
            raise RadllmError(f"VQ loss config: disc_start_step={self.disc_start_step}, expected >= 0")
        if self.adaptive_weight_max <= 0:
            raise RadllmError(f"VQ loss config: adaptive_weight_max={self.adaptive_weight_max}, expected > 0")
        if self.disc_channels < 1 or self.disc_layers < 1:
            raise RadllmError(f"VQ loss config: disc_channels={self.disc_channels}, disc_layers={self.disc_layers}, expected positive integers")


def vq_f16_tiny() -> VQConfig:
    """CPU-trainable tokenizer for the phantom demo and tests: 128 px -> 8x8 = 64 tokens."""
    return VQConfig(image_size=128, base_channels=32, channel_mult=[1, 1, 2, 2, 4], num_res_blocks=1, z_channels=64, codebook_size=256, codebook_dim=8)


def vq_f16_base() -> VQConfig:
    """Default tokenizer: 256 px -> 16x16 = 256 tokens, 8192 codes in an 8-d lookup space."""
    return VQConfig(image_size=256, base_channels=128, channel_mult=[1, 1, 2, 2, 4], num_res_blocks=2, z_channels=256, codebook_size=8192, codebook_dim=8)


def vq_f8_base() -> VQConfig:
    """Finer tokenizer for small findings (nodules, lines): 256 px -> 32x32 = 1024 tokens."""
    return VQConfig(image_size=256, base_channels=128, channel_mult=[1, 2, 2, 4], num_res_blocks=2, z_channels=256, codebook_size=8192, codebook_dim=8)


VQ_PRESETS: dict[str, Callable[[], VQConfig]] = {
    "vq-f16-tiny": vq_f16_tiny,
    "vq-f16-base": vq_f16_base,
    "vq-f8-base": vq_f8_base,
}


def vq_config_from_preset(name: str, **overrides: object) -> VQConfig:
    """Build the named preset, optionally replacing fields (e.g. ``image_size=512``).

    Raises:
        RadllmError: unknown preset name or unknown/invalid override.
    """
    if name not in VQ_PRESETS:
        raise RadllmError(f"unknown VQ preset {name!r}; available: {sorted(VQ_PRESETS)}")
    config = VQ_PRESETS[name]()
    if overrides:
        names = {f.name for f in dataclasses.fields(VQConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise RadllmError(f"VQ preset {name!r}: unknown override field(s) {unknown}")
        config = dataclasses.replace(config, **overrides)
    return config
