"""The clinical VQ-GAN image tokenizer: model, quantizer, discriminator, loss, metrics, checkpoints.

Images are float tensors [B, 1, H, W] in [0, 1] (0 = black); codes are int64 grids [B, h, w].
The training loop lives in its own module and uses only the names exported here. Consumers of
a tokenizer are typed against `ImageTokenizer`; `load_vq` returns radllm's `VQModel` or an
imported LlamaGen tokenizer (`LlamaGenVQ`), as the directory's config.json says.
"""

from radllm.vq.checkpoint import load_vq, load_vq_config, save_vq, tokenizer_geometry, vq_weights_hash
from radllm.vq.config import VQ_PRESETS, VQConfig, VQLossConfig, vq_config_from_preset
from radllm.vq.discriminator import PatchDiscriminator
from radllm.vq.llamagen import LlamaGenConfig, LlamaGenVQ, import_llamagen
from radllm.vq.losses import (
    ClinicalVQLoss,
    FeatureEncoder,
    adaptive_gan_weight,
    feature_loss,
    finding_loss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    image_gradients,
    l1_loss,
)
from radllm.vq.metrics import code_perplexity, codebook_usage, gradient_magnitude_error, psnr, ssim
from radllm.vq.model import Decoder, Encoder, VQModel, VQOutput
from radllm.vq.quantizer import QuantizerOutput, VectorQuantizer
from radllm.vq.tokenizer import CodeGeometry, ImageTokenizer

__all__ = [
    "VQ_PRESETS",
    "ClinicalVQLoss",
    "CodeGeometry",
    "Decoder",
    "Encoder",
    "FeatureEncoder",
    "ImageTokenizer",
    "LlamaGenConfig",
    "LlamaGenVQ",
    "PatchDiscriminator",
    "QuantizerOutput",
    "VQConfig",
    "VQLossConfig",
    "VQModel",
    "VQOutput",
    "VectorQuantizer",
    "adaptive_gan_weight",
    "code_perplexity",
    "codebook_usage",
    "feature_loss",
    "finding_loss",
    "gradient_magnitude_error",
    "gradient_penalty",
    "hinge_d_loss",
    "hinge_g_loss",
    "image_gradients",
    "import_llamagen",
    "l1_loss",
    "load_vq",
    "load_vq_config",
    "psnr",
    "save_vq",
    "ssim",
    "tokenizer_geometry",
    "vq_config_from_preset",
    "vq_weights_hash",
]
