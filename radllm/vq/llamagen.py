"""LlamaGen's released VQ image tokenizer (VQ-16, FoundationVision/LlamaGen) as a radllm `ImageTokenizer`.

The architecture is re-implemented here module for module, so that the state dict of
`vq_ds16_c2i.pt` loads with its own tensor names (`encoder.conv_blocks.4.attn.0.q.weight`,
`quantize.embedding.weight`, ...): encoder and decoder of `ch * ch_mult` widths with 32-group
GroupNorm, self-attention after every residual block of the lowest resolution, `quant_conv` /
`post_quant_conv` 1x1 projections to and from an 8-d lookup space, and a nearest-code quantizer
with l2-normalised codes and inputs. Only inference is kept (no losses, no dropout).

LlamaGen works on RGB in [-1, 1]; radiographs are grayscale in [0, 1]. `encode` therefore maps
[0, 1] -> [-1, 1] and repeats the channel three times; `decode_codes` clamps to [-1, 1], maps back
to [0, 1] and averages the three channels into one.

`import_llamagen` (`radllm import-vq --llamagen`) turns the published checkpoint into a tokenizer
directory ("format": "llamagen-vq"): no pickle beyond `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from radllm import atomic
from radllm.errors import RadllmError
from radllm.vq.model import Upsample  # LlamaGen's upsampling is the same layer (parameter names included)
from radllm.vq.tokenizer import (
    CONFIG_FILENAME,
    WEIGHTS_FILENAME,
    CodeGeometry,
    SquareGridSizes,
    check_state,
    config_from_object,
    read_config_object,
    read_weights,
)

LLAMAGEN_FORMAT = "llamagen-vq"
LLAMAGEN_FORMAT_VERSION = 1
RGB = 3  # LlamaGen encodes and decodes three channels
USAGE_WINDOW = 65536  # length of LlamaGen's `codebook_used` buffer (indices of its latest training codes)
# LlamaGen's trainer pickles its argparse options under "args"; a Namespace only holds
# attributes, so unpickling one runs no code, and whatever it holds must still be plain data.
PLAIN_ARGS = "argparse.Namespace"
CODE_CHUNK = 4096  # latents matched to the codebook at once: bounds the [N, K] distance matrix to 256 MiB at K = 16384


@dataclass
class LlamaGenConfig:
    """Architecture of a LlamaGen VQ tokenizer; the defaults are the released VQ-16 (16384 codes)."""

    image_size: int = 256  # pixels per side radiographs are resized to (VQ-16 was trained at 256)
    ch: int = 128  # width of the first level; level i has ch * ch_mult[i] channels
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])  # len - 1 halvings: f = 16
    num_res_blocks: int = 2  # residual blocks per encoder level (the decoder has one more)
    z_channels: int = 256  # encoder output / decoder input channels
    codebook_size: int = 16384
    codebook_embed_dim: int = 8  # the l2-normalised lookup space of the codes
    # LlamaGen registers a `quantize.codebook_used` buffer (a training statistic) when this is
    # true, as in its released checkpoints; it only decides whether that tensor is expected.
    codebook_show_usage: bool = True

    def __post_init__(self) -> None:
        def fail(key: str, expected: str) -> None:
            raise RadllmError(f"LlamaGen VQ config: {key}={getattr(self, key)!r}, expected {expected}")

        if not isinstance(self.ch_mult, list) or not self.ch_mult or any(not isinstance(m, int) or m < 1 for m in self.ch_mult):
            fail("ch_mult", "a non-empty list of positive integers")
        for key in ("image_size", "ch", "num_res_blocks", "z_channels", "codebook_embed_dim"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                fail(key, "a positive integer")
        if not isinstance(self.codebook_size, int) or self.codebook_size < 2:
            fail("codebook_size", "an integer of at least 2")
        if not isinstance(self.codebook_show_usage, bool):
            fail("codebook_show_usage", "true or false")
        if any(self.ch * m % 32 for m in self.ch_mult):
            fail("ch", f"a width whose multiples by ch_mult {self.ch_mult} are all divisible by 32 (LlamaGen's GroupNorm has 32 groups)")
        if self.image_size % self.downsample:
            fail("image_size", f"a multiple of the downsampling factor {self.downsample} (2 ** (len(ch_mult) - 1))")

    @property
    def downsample(self) -> int:
        """Spatial reduction factor from pixels to code grid."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid_size(self) -> int:
        """Code-grid side length of an `image_size` image."""
        return self.image_size // self.downsample


def llamagen_vq16() -> LlamaGenConfig:
    """LlamaGen `VQ_16` (`vq_ds16_c2i.pt`, `vq_ds16_t2i.pt`): 256 px -> 16x16 codes of 16384."""
    return LlamaGenConfig()


def llamagen_vq8() -> LlamaGenConfig:
    """LlamaGen `VQ_8` (`vq_ds8_c2i.pt`): 256 px -> 32x32 codes of 16384."""
    return LlamaGenConfig(ch_mult=[1, 2, 2, 4])


LLAMAGEN_PRESETS: dict[str, Callable[[], LlamaGenConfig]] = {"vq-16": llamagen_vq16, "vq-8": llamagen_vq8}


def llamagen_config_from_preset(name: str, **overrides: Any) -> LlamaGenConfig:
    """Build the named preset, optionally replacing fields (e.g. ``image_size=512``).

    Raises:
        RadllmError: unknown preset name or unknown/invalid override.
    """
    if name not in LLAMAGEN_PRESETS:
        raise RadllmError(f"unknown LlamaGen VQ preset {name!r}; available: {sorted(LLAMAGEN_PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(LlamaGenConfig)})
    if unknown:
        raise RadllmError(f"LlamaGen VQ preset {name!r}: unknown override field(s) {unknown}")
    return dataclasses.replace(LLAMAGEN_PRESETS[name](), **overrides)


def group_norm(channels: int) -> nn.GroupNorm:
    """LlamaGen's normalisation: always 32 groups (hence the config's divisibility check)."""
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """(GroupNorm, SiLU, 3x3 conv) twice plus a skip: a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, with separate 1x1 q, k, v and output convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (conv(h).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))  # [B, H*W, C] each
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v: [B, H*W, C]
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one zero row and column at the bottom and right (as LlamaGen)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # [B, C, H, W] -> [B, C, H/2, W/2]


class Level(nn.Module):
    """One resolution: residual blocks (each followed by attention at the lowest resolution), then a resampling.

    The attribute names (`res`, `attn`, `downsample` / `upsample`) are LlamaGen's state-dict keys.
    """

    def __init__(self, widths: list[tuple[int, int]], attention: bool, resample: str | None) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(i, o) for i, o in widths)
        self.attn = nn.ModuleList(AttnBlock(o) for _, o in widths) if attention else nn.ModuleList()
        if resample == "down":
            self.downsample = Downsample(widths[-1][1])
        elif resample == "up":
            self.upsample = Upsample(widths[-1][1])
        self.resample = resample

    def forward(self, h: Tensor) -> Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        if self.resample == "down":
            h = self.downsample(h)
        elif self.resample == "up":
            h = self.upsample(h)
        return h


def middle(channels: int) -> nn.ModuleList:
    """ResnetBlock, AttnBlock, ResnetBlock at the lowest resolution (keys `mid.0`, `mid.1`, `mid.2`)."""
    return nn.ModuleList([ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels)])


class Encoder(nn.Module):
    """[B, 3, H, W] in [-1, 1] -> [B, z_channels, H/f, W/f]."""

    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        widths = [config.ch * m for m in config.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(RGB, config.ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        width = config.ch
        for i, out_width in enumerate(widths):
            blocks = [(width, out_width)] + [(out_width, out_width)] * (config.num_res_blocks - 1)
            self.conv_blocks.append(Level(blocks, attention=i == last, resample="down" if i < last else None))
            width = out_width
        self.mid = middle(width)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, config.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)  # [B, ch, H, W]
        for level in self.conv_blocks:
            h = level(h)  # halves H, W on every level but the last
        for block in self.mid:
            h = block(h)  # [B, ch * ch_mult[-1], H/f, W/f]
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, z_channels, H/f, W/f]


class Decoder(nn.Module):
    """[B, z_channels, h, w] -> [B, 3, h*f, w*f] (in [-1, 1] when trained, unclamped)."""

    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        widths = [config.ch * m for m in config.ch_mult]
        width = widths[-1]
        self.conv_in = nn.Conv2d(config.z_channels, width, 3, padding=1)
        self.mid = middle(width)
        self.conv_blocks = nn.ModuleList()  # lowest resolution first, as LlamaGen numbers them
        for i in reversed(range(len(widths))):
            blocks = [(width, widths[i])] + [(widths[i], widths[i])] * config.num_res_blocks
            self.conv_blocks.append(Level(blocks, attention=i == len(widths) - 1, resample="up" if i > 0 else None))
            width = widths[i]
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, RGB, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)  # [B, ch * ch_mult[-1], h, w]
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)  # doubles h, w on every level but the last
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, 3, h*f, w*f]


class VectorQuantizer(nn.Module):
    """Nearest code by squared distance between l2-normalised latents and l2-normalised codes."""

    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.codebook_size, config.codebook_embed_dim)
        if config.codebook_show_usage:
            self.register_buffer("codebook_used", torch.zeros(USAGE_WINDOW))

    def codebook(self) -> Tensor:
        """[K, codebook_embed_dim] unit-length codes (the table actually looked up)."""
        return F.normalize(self.embedding.weight, dim=-1)

    def codes(self, z: Tensor) -> Tensor:
        """int64 codes [B, h, w] of latents `z` [B, codebook_embed_dim, h, w]."""
        B, C, H, W = z.shape
        flat = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, C), dim=-1)  # [B*h*w, C]
        codebook = self.codebook()
        squared = codebook.pow(2).sum(dim=1)  # [K]
        nearest = [
            (chunk.pow(2).sum(dim=1, keepdim=True) + squared - 2 * chunk @ codebook.T).argmin(dim=1)  # [n, K] -> [n]
            for chunk in flat.split(CODE_CHUNK)
        ]
        return torch.cat(nearest).view(B, H, W)

    def lookup(self, codes: Tensor) -> Tensor:
        """Latents [B, codebook_embed_dim, h, w] of codes [B, h, w]."""
        return self.codebook()[codes].permute(0, 3, 1, 2)


class LlamaGenVQ(SquareGridSizes, nn.Module):
    """LlamaGen's VQ model with radllm's image convention: grayscale [B, 1, H, W] in [0, 1]."""

    def __init__(self, config: LlamaGenConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_embed_dim, config.z_channels, 1)

    @property
    def device(self) -> torch.device:
        return self.quantize.embedding.weight.device

    def encode(self, x: Tensor) -> Tensor:
        """Image tokens of `x` [B, 1, H, W] in [0, 1]: int64 codes [B, H/f, W/f]."""
        f = self.config.downsample
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"expected images [B, 1, H, W] with H and W multiples of {f}, got shape {list(x.shape)}")
        rgb = (x * 2.0 - 1.0).expand(-1, RGB, -1, -1)  # [B, 3, H, W] in [-1, 1]
        return self.quantize.codes(self.quant_conv(self.encoder(rgb)))  # [B, H/f, W/f]

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Images [B, 1, h*f, w*f] in [0, 1] (clamped) from integer codes [B, h, w]."""
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, h, w], got shape {list(codes.shape)}")
        rgb = self.decoder(self.post_quant_conv(self.quantize.lookup(codes)))  # [B, 3, h*f, w*f] in [-1, 1] scale
        return ((rgb.clamp(-1.0, 1.0) + 1.0) / 2.0).mean(dim=1, keepdim=True)


def load_llamagen_config(directory: str | os.PathLike) -> LlamaGenConfig:
    """Read and validate `config.json` of a llamagen-vq directory.

    Raises:
        RadllmError: missing or unparsable file, wrong format/version, unknown or invalid fields.
    """
    path, obj = read_config_object(directory)
    if obj.pop("format", None) != LLAMAGEN_FORMAT:
        raise RadllmError(f"{path}: 'format' must be {LLAMAGEN_FORMAT!r}; this is not an imported LlamaGen tokenizer")
    return config_from_object(path, obj, LlamaGenConfig, LLAMAGEN_FORMAT_VERSION, "LlamaGen VQ")


def llamagen_geometry(directory: Path) -> CodeGeometry:
    """Image size, code grid and codebook of a llamagen-vq directory, from its config alone."""
    return CodeGeometry.of_square(load_llamagen_config(directory))


def load_llamagen(directory: Path, device: str | torch.device) -> LlamaGenVQ:
    """Rebuild the LlamaGen tokenizer of a llamagen-vq directory on `device`, in eval mode.

    Raises:
        RadllmError: missing/corrupt files or weights that do not match the config (each tensor named).
    """
    config = load_llamagen_config(directory)
    path, state = read_weights(directory)
    model = LlamaGenVQ(config)
    check_state(model.state_dict(), state, path)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def read_llamagen_checkpoint(path: Path) -> dict[str, Tensor]:
    """The model state dict of a LlamaGen checkpoint: a `.pt` dict with a "model" entry, or a `.safetensors` file.

    Other entries of a `.pt` (ema, optimizer, discriminator, steps, args) are ignored.

    Raises:
        RadllmError: a missing or unreadable file, a pickle that needs more than tensors and plain
            containers, no "model" state dict, or an entry of it that is not a tensor.
    """
    if not path.is_file():
        raise RadllmError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise RadllmError(f"{path}: corrupt or unreadable safetensors file ({err})") from err
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))  # reads the pickle only
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise RadllmError(f"{path}: not a readable torch checkpoint ({err})") from err
    refused = sorted(set(needed) - {PLAIN_ARGS})
    if refused:
        raise RadllmError(
            f"{path}: refused: its pickle imports {refused}, and radllm reads .pt files with torch.load(weights_only=True) "
            "only (tensors and plain containers). Where you trust the file, save its 'model' state dict with "
            "safetensors.torch.save_file and import the .safetensors file instead"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise RadllmError(f"{path}: not a readable torch checkpoint ({str(err).splitlines()[0]})") from err
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), Mapping):
        found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise RadllmError(f"{path}: expected a dict with a 'model' state dict (LlamaGen's layout), found {found}")
    state = obj["model"]
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, Tensor):
            raise RadllmError(f"{path}: 'model' entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(state)


def import_llamagen(
    checkpoint_path: str | os.PathLike, out_dir: str | os.PathLike, image_size: int = 256, preset: str = "vq-16", **overrides: Any
) -> Path:
    """Write a released LlamaGen checkpoint as a llamagen-vq tokenizer directory; returns its path.

    Args:
        checkpoint_path: `vq_ds16_c2i.pt` (a dict with a "model" state dict) or a `.safetensors` state dict.
        out_dir: the tokenizer directory, replaced atomically (`model.safetensors` + `config.json`).
        image_size: pixels per side radiographs are resized to before encoding.
        preset: the architecture (`LLAMAGEN_PRESETS`); `overrides` replace its fields (tests build tiny ones).

    Raises:
        RadllmError: an invalid config, a refused or unreadable checkpoint, or tensors that do not
            match the architecture (each missing, unexpected or differently shaped tensor named).
    """
    config = llamagen_config_from_preset(preset, image_size=image_size, **overrides)
    path = Path(checkpoint_path)
    state = read_llamagen_checkpoint(path)
    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
        expected = LlamaGenVQ(config).state_dict()
    try:
        check_state(expected, state, path, against=f"the LlamaGen {preset} architecture")
    except RadllmError as err:
        raise RadllmError(f"{err}; if it is another LlamaGen model, choose its preset (one of {sorted(LLAMAGEN_PRESETS)})") from err
    weights = {name: tensor.detach().contiguous() for name, tensor in state.items()}
    out = Path(out_dir)
    with atomic.atomic_directory(out) as tmp:
        save_file(weights, str(tmp / WEIGHTS_FILENAME), metadata={"format": "pt"})
        atomic.write_json(tmp / CONFIG_FILENAME, dataclasses.asdict(config) | {"format": LLAMAGEN_FORMAT, "version": LLAMAGEN_FORMAT_VERSION})
    return out
