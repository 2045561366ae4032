"""The clinical composite VQ-GAN loss and the pure functions it is made of.

Chest radiographs are judged on thin, high-contrast structures (rib cortices, pleural lines,
tubes and wires) that plain L1 training blurs. The generator loss therefore adds to L1 a penalty
on image *gradients*, optional terms from a frozen CXR encoder (feature matching, and the match
of its per-finding logits), the VQ terms and a PatchGAN hinge loss whose weight adapts to the
reconstruction gradients and starts late:

    total = l1_weight * |x - x_hat|_1 + grad_weight * ||grad x - grad x_hat||^2
            + feature_weight * feature(x, x_hat) + finding_weight * finding(x, x_hat)
            + codebook_weight * (codebook + commitment)
            + gan_weight * adaptive * hinge_G(D(x_hat))          (GAN only from disc_start_step)

Every term is returned separately in a metrics dict so the training loop can log it.
Images are [B, C, H, W] floats in the [0, 1] convention throughout.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from radllm.errors import RadllmError
from radllm.vq.config import GRAD_OPERATORS, VQLossConfig
from radllm.vq.quantizer import QuantizerOutput


class FeatureEncoder(Protocol):
    """A frozen CXR encoder (e.g. the project's small CXR classifier loaded from a local file).

    `features` takes images [B, 1, H, W] in [0, 1] (normalising them itself as it was trained)
    and returns multi-layer feature maps [B, C_l, H_l, W_l]; `classify_features` turns those maps
    into the classifier's per-finding logits [B, L] (used only by the finding term).
    """

    def features(self, x: Tensor) -> list[Tensor]: ...

    def classify_features(self, maps: list[Tensor]) -> Tensor: ...


def l1_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean absolute error over all pixels of the batch."""
    return (x - x_hat).abs().mean()


# Sobel kernels divided by 8, so a ramp rising by 1 per pixel has gradient exactly 1 (the same
# scale as a forward difference) and lambda_grad keeps its meaning across the two operators.
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_SOBEL_Y = _SOBEL_X.t().contiguous()


def image_gradients(x: Tensor, operator: str = "sobel") -> tuple[Tensor, Tensor]:
    """Horizontal and vertical image gradients (gx, gy), each [B, C, H, W] like `x`.

    Borders use replicate padding, so the image edge itself never looks like an intensity edge.

    - ``"finite_difference"``: forward differences, gx[i, j] = x[i, j+1] - x[i, j] and
      gy[i, j] = x[i+1, j] - x[i, j]; zero in the last column / row.
    - ``"sobel"``: 3x3 Sobel filters (cross-correlation) divided by 8, so on a unit ramp the
      gradient is 1 as for forward differences; positive when intensity grows right / down.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {list(x.shape)}")
    if operator == "finite_difference":
        padded = F.pad(x, (0, 1, 0, 1), mode="replicate")  # [B, C, H+1, W+1]
        gx = padded[:, :, :-1, 1:] - padded[:, :, :-1, :-1]
        gy = padded[:, :, 1:, :-1] - padded[:, :, :-1, :-1]
        return gx, gy
    if operator == "sobel":
        C = x.shape[1]
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")  # [B, C, H+2, W+2]
        kx = _SOBEL_X.to(device=x.device, dtype=x.dtype).expand(C, 1, 3, 3)
        ky = _SOBEL_Y.to(device=x.device, dtype=x.dtype).expand(C, 1, 3, 3)
        return F.conv2d(padded, kx, groups=C), F.conv2d(padded, ky, groups=C)  # [B, C, H, W] each
    raise RadllmError(f"unknown gradient operator {operator!r}; expected one of {list(GRAD_OPERATORS)}")


def gradient_penalty(x: Tensor, x_hat: Tensor, operator: str = "sobel") -> Tensor:
    """Mean over pixels of the squared gradient difference ||grad x - grad x_hat||^2.

    Normalisation: per pixel the squared Euclidean norm of the 2-vector difference,
    (gx - gx_hat)^2 + (gy - gy_hat)^2, then the mean over batch, channels and all H x W pixels.
    """
    gx, gy = image_gradients(x, operator)
    gx_hat, gy_hat = image_gradients(x_hat, operator)
    return ((gx - gx_hat) ** 2 + (gy - gy_hat) ** 2).mean()


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))).

    Zero once real logits are >= 1 and fake logits <= -1; the 0.5 keeps it on the scale of one
    hinge term.
    """
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator hinge loss -mean D(x_hat): lower when the discriminator rates fakes as real."""
    return -fake_logits.mean()


def adaptive_gan_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer_weight: Tensor, max_weight: float = 1e4, eps: float = 1e-4) -> Tensor:
    """||d rec / d W|| / (||d gan / d W|| + eps) at the decoder's last layer W, clamped, detached.

    Balances the GAN gradient against the reconstruction gradient where both enter the decoder,
    so `gan_weight` means "this fraction of the reconstruction signal" whatever the loss scales.
    Both losses must still have their graphs (the graphs are retained for the real backward).
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


def _channel_normalize(features: Tensor, eps: float = 1e-10) -> Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def feature_loss(target: list[Tensor], predicted: list[Tensor]) -> Tensor:
    """Feature-matching distance of two images' maps under a frozen CXR encoder (LPIPS-like).

    `target` and `predicted` are the encoder's maps of x and x_hat (finest first). Each layer's
    feature vectors are l2-normalised over channels (so every layer and position counts equally
    whatever its activation scale); per layer the loss is the squared distance of the normalised
    vectors summed over channels (range [0, 4]) and averaged over batch and positions; the result
    is the mean over layers.
    """
    if len(target) != len(predicted) or not target:
        raise ValueError(f"feature encoder returned {len(target)} and {len(predicted)} layers for x and x_hat")
    per_layer = [(_channel_normalize(p) - _channel_normalize(t)).pow(2).sum(dim=1).mean() for p, t in zip(predicted, target)]
    return torch.stack(per_layer).mean()


def finding_loss(target_logits: Tensor, predicted_logits: Tensor) -> Tensor:
    """Mean Bernoulli KL(p || q) of the classifier's findings on x (p) and on x_hat (q).

    Why: the feature term weighs every position and channel alike, so a finding that covers a
    few pixels (a tube, a line, a small nodule) costs almost nothing to lose; the classifier's
    logit for that finding moves a lot when it is lost. Zero when every probability agrees; no
    labels are needed (the classifier's own reading of x is the target), so it trains on
    unlabelled radiographs. Logits are [B, L]; the mean is over batch and findings.
    """
    if target_logits.shape != predicted_logits.shape:
        raise ValueError(f"finding logits differ in shape: {list(target_logits.shape)} for x, {list(predicted_logits.shape)} for x_hat")
    p = torch.sigmoid(target_logits)
    # KL(p || q) = p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q)), with log-sigmoids for
    # stability: log q = logsigmoid(b), log(1 - q) = logsigmoid(-b).
    kl = p * (F.logsigmoid(target_logits) - F.logsigmoid(predicted_logits)) + (1 - p) * (
        F.logsigmoid(-target_logits) - F.logsigmoid(-predicted_logits)
    )
    return kl.mean()


def _to_floats(scalars: list[Tensor]) -> list[float]:
    """Python floats of scalar tensors with a single device synchronisation (for metrics dicts)."""
    return torch.stack([s.detach().float() for s in scalars]).tolist()


class ClinicalVQLoss:
    """The composite generator loss and the discriminator loss, as two separate methods.

    Args:
        config: weights and schedule.
        feature_encoder: frozen CXR encoder for the feature and finding terms, or None to switch
            both off. It is put in eval mode with gradients disabled for its parameters; move it
            to the images' device before use. With None, the metrics report ``feature = 0``,
            ``finding = 0`` and ``feature_enabled = 0`` (always the same keys, so metrics can be
            averaged).

    Generator step: `generator_loss(...)` backpropagates into the discriminator's parameters as
    well (D(x_hat) is not detached from D); the training loop steps only the VQ optimizer there
    and zeroes D's gradients before the discriminator step.
    """

    def __init__(self, config: VQLossConfig, feature_encoder: FeatureEncoder | None = None) -> None:
        self.config = config
        self.feature_encoder = feature_encoder
        if isinstance(feature_encoder, nn.Module):
            feature_encoder.eval()
            feature_encoder.requires_grad_(False)

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms (generator and discriminator) are on at optimizer step `step`."""
        return step >= self.config.disc_start_step and self.config.gan_weight > 0

    def generator_loss(
        self,
        x: Tensor,
        x_hat: Tensor,
        quant: QuantizerOutput,
        step: int,
        last_layer_weight: Tensor,
        disc: nn.Module | None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Loss of the VQ model (encoder, quantizer, decoder) for one batch.

        Args:
            x: originals [B, 1, H, W] in [0, 1]. x_hat: reconstructions, same shape, unclamped.
            quant: the quantizer output of the same forward pass.
            step: optimizer step (GAN terms are zero while step < disc_start_step).
            last_layer_weight: `VQModel.last_decoder_layer` (for the adaptive GAN weight).
            disc: the discriminator, or None to train without GAN.

        Returns:
            (total loss, metrics): metrics keys l1, grad, feature, finding, feature_enabled, rec (weighted
            reconstruction part), codebook, commitment, gan (hinge G value), gan_weight_effective
            (gan_weight x adaptive factor, 0 while inactive), total.

        Without a graph (validation under `torch.no_grad()`), the adaptive factor cannot be
        computed and is taken as 1, so validation `total` uses the plain `gan_weight`.
        """
        cfg = self.config
        l1 = l1_loss(x, x_hat)
        grad = gradient_penalty(x, x_hat, cfg.grad_operator)
        feature = finding = torch.zeros((), device=x.device)
        encoder = self.feature_encoder
        if encoder is not None:
            with torch.no_grad():
                target = encoder.features(x)
            predicted = encoder.features(x_hat)
            feature = feature_loss(target, predicted)
            if cfg.finding_weight > 0:
                with torch.no_grad():
                    target_logits = encoder.classify_features(target)
                finding = finding_loss(target_logits, encoder.classify_features(predicted))
        rec = cfg.l1_weight * l1 + cfg.grad_weight * grad + cfg.feature_weight * feature + cfg.finding_weight * finding
        total = rec + cfg.codebook_weight * (quant.codebook_loss + quant.commitment_loss)

        gan = torch.zeros((), device=x.device)
        gan_weight = torch.zeros((), device=x.device)
        if disc is not None and self.gan_active(step):
            gan = hinge_g_loss(disc(x_hat))
            if cfg.adaptive_gan_weight and torch.is_grad_enabled() and rec.requires_grad:
                gan_weight = cfg.gan_weight * adaptive_gan_weight(rec, gan, last_layer_weight, max_weight=cfg.adaptive_weight_max)
            else:
                gan_weight = torch.full((), cfg.gan_weight, device=x.device)
            total = total + gan_weight * gan

        names = ("l1", "grad", "feature", "finding", "rec", "codebook", "commitment", "gan", "gan_weight_effective", "total")
        values = [l1, grad, feature, finding, rec, quant.codebook_loss, quant.commitment_loss, gan, gan_weight, total]
        metrics = dict(zip(names, _to_floats(values)))
        metrics["feature_enabled"] = float(self.feature_encoder is not None)
        return total, metrics

    def discriminator_loss(self, x: Tensor, x_hat: Tensor, step: int, disc: nn.Module) -> tuple[Tensor, dict[str, float]]:
        """Hinge loss of the discriminator on originals vs (detached) reconstructions.

        Before `disc_start_step` it returns a constant zero without a graph and does not run the
        discriminator: check `gan_active(step)` and skip the discriminator update then.

        Returns:
            (loss, metrics): metrics keys d_loss, logits_real, logits_fake (mean logits), d_active.
        """
        if not self.gan_active(step):
            zero = torch.zeros((), device=x.device)
            return zero, {"d_loss": 0.0, "logits_real": 0.0, "logits_fake": 0.0, "d_active": 0.0}
        # One discriminator call on [originals; reconstructions]: a single forward per backward
        # keeps DistributedDataParallel's gradient bookkeeping simple and halves kernel launches.
        logits = disc(torch.cat([x.detach(), x_hat.detach().to(x.dtype)]))  # [2B, 1, h, w]
        real_logits, fake_logits = logits.chunk(2)
        loss = hinge_d_loss(real_logits, fake_logits)
        values = _to_floats([loss, real_logits.mean(), fake_logits.mean()])
        metrics = dict(zip(("d_loss", "logits_real", "logits_fake"), values)) | {"d_active": 1.0}
        return loss, metrics
