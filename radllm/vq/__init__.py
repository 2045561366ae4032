"""The clinical VQ-GAN image tokenizer: model, quantizer, discriminator, loss, metrics, checkpoints.

Images are float tensors [B, 1, H, W] in [0, 1] (0 = black); codes are int64 grids [B, h, w].
The training loop lives in its own module and uses only the names exported here.
"""

from radllm.vq.checkpoint import load_vq, load_vq_config, save_vq, vq_weights_hash
from radllm.vq.config import VQ_PRESETS, VQConfig, VQLossConfig, vq_config_from_preset
from radllm.vq.discriminator import PatchDiscriminator
from radllm.vq.losses import (
    ClinicalVQLoss,
    FeatureEncoder,
    adaptive_gan_weight,
    feature_loss,
    gradient_penalty,
    hinge_d_loss,
    hinge_g_loss,
    image_gradients,
    l1_loss,
)
from radllm.vq.metrics import code_perplexity, codebook_usage, gradient_magnitude_error, psnr, ssim
from radllm.vq.model import Decoder, Encoder, VQModel, VQOutput
from radllm.vq.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "VQ_PRESETS",
    "ClinicalVQLoss",
    "Decoder",
    "Encoder",
    "FeatureEncoder",
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
    "gradient_magnitude_error",
    "gradient_penalty",
    "hinge_d_loss",
    "hinge_g_loss",
    "image_gradients",
    "l1_loss",
    "load_vq",
    "load_vq_config",
    "psnr",
    "save_vq",
    "ssim",
    "vq_config_from_preset",
    "vq_weights_hash",
]
