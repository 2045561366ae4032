"""VQModel shapes, encode/decode consistency, presets, the discriminator and the VQ directory."""

import hashlib
import json
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import save_file

from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.vq import (
    VQ_PRESETS,
    ClinicalVQLoss,
    PatchDiscriminator,
    VQConfig,
    VQLossConfig,
    VQModel,
    load_vq,
    load_vq_config,
    save_vq,
    vq_config_from_preset,
    vq_weights_hash,
)


def tiny_config(channel_mult=(1, 2, 2, 2, 4), image_size=32, codebook_size=64) -> VQConfig:
    return VQConfig(image_size=image_size, base_channels=8, channel_mult=list(channel_mult), num_res_blocks=1, z_channels=16, codebook_size=codebook_size, codebook_dim=4)


@pytest.mark.parametrize(("channel_mult", "image_size", "factor"), [((1, 2, 2, 4), 32, 8), ((1, 1, 2, 2, 4), 64, 16)])
def test_shapes_for_factor_8_and_16(channel_mult, image_size, factor):
    torch.manual_seed(0)
    config = tiny_config(channel_mult, image_size)
    assert config.downsample == factor and config.grid_size == image_size // factor
    model = VQModel(config)
    x = torch.rand(2, 1, image_size, image_size)
    out = model(x)
    g = config.grid_size
    assert out.reconstruction.shape == x.shape
    assert out.quantizer.codes.shape == (2, g, g)
    assert out.quantizer.z_q.shape == (2, config.z_channels, g, g)
    assert out.quantizer.latents.shape == (2 * g * g, config.codebook_dim)
    codes = model.encode(x)
    assert codes.shape == (2, g, g) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < config.codebook_size
    images = model.decode_codes(codes).detach()
    assert images.shape == x.shape
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_decode_codes_equals_clamped_forward_in_eval_mode():
    torch.manual_seed(1)
    model = VQModel(tiny_config()).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model.encode(x), out.quantizer.codes, rtol=0, atol=0)
        # Equal up to float rounding of the straight-through sum z + (q - z).
        torch.testing.assert_close(model.decode_codes(out.quantizer.codes), out.reconstruction.clamp(0, 1), rtol=0, atol=1e-4)


def test_encoder_gets_gradient_through_the_quantizer():
    torch.manual_seed(2)
    model = VQModel(tiny_config())
    out = model(torch.rand(2, 1, 32, 32))
    (out.reconstruction.mean() + out.quantizer.commitment_loss).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.last_decoder_layer is model.decoder.conv_out.weight
    assert model.last_decoder_layer.grad.abs().sum() > 0


def test_bad_inputs_are_rejected():
    model = VQModel(tiny_config())
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 1, 40, 40))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        model.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 63\]"):
        model.decode_codes(torch.full((1, 2, 2), 64))


def test_a_few_steps_of_the_composite_loss_improve_reconstruction():
    """End-to-end sign check: encoder, straight-through quantizer, decoder and every loss term
    (GAN included, active from step 0) optimise in the right direction on a fixed batch."""
    torch.manual_seed(3)
    model = VQModel(tiny_config(channel_mult=(1, 2, 2), codebook_size=32))
    disc = PatchDiscriminator(1, channels=8, n_layers=2)
    loss = ClinicalVQLoss(VQLossConfig(disc_start_step=0, gan_weight=0.05))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    x = torch.stack([((xx**2 + yy**2) < r).float() * 0.8 + 0.1 for r in (0.3, 0.5, 0.7, 0.9)]).unsqueeze(1)
    opt_g = torch.optim.Adam(model.parameters(), lr=2e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4)
    first = last = None
    for step in range(25):
        out = model(x)
        total, metrics = loss.generator_loss(x, out.reconstruction, out.quantizer, step, model.last_decoder_layer, disc)
        opt_g.zero_grad()
        total.backward()
        opt_g.step()
        d_loss, _ = loss.discriminator_loss(x, out.reconstruction, step, disc)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        first = first or metrics
        last = metrics
    assert last["l1"] < 0.5 * first["l1"]
    assert last["grad"] < first["grad"]


def test_patch_discriminator_shapes_and_spectral_norm():
    disc = PatchDiscriminator(in_channels=1, channels=8, n_layers=3)
    assert disc(torch.rand(2, 1, 64, 64)).shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    assert PatchDiscriminator(channels=4)(torch.rand(1, 1, 256, 256)).shape == (1, 1, 30, 30)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(m, "parametrizations") for m in convs)


def test_presets_and_config_validation():
    assert set(VQ_PRESETS) == {"vq-f16-tiny", "vq-f16-base", "vq-f8-base"}
    assert vq_config_from_preset("vq-f16-base").grid_size == 16
    assert vq_config_from_preset("vq-f8-base").grid_size == 32
    assert vq_config_from_preset("vq-f16-tiny", image_size=64).grid_size == 4
    with pytest.raises(RadllmError, match="vq-f16-base"):
        vq_config_from_preset("vq-f32")
    with pytest.raises(RadllmError, match="widht"):
        vq_config_from_preset("vq-f16-tiny", widht=3)
    with pytest.raises(RadllmError, match="image_size=100.*16"):
        VQConfig(image_size=100)
    with pytest.raises(RadllmError, match="channel_mult"):
        VQConfig(channel_mult=[])


@dataclass
class RunWithVQ:
    vq: VQConfig = field(default_factory=VQConfig)
    loss: VQLossConfig = field(default_factory=VQLossConfig)


def test_configs_load_through_the_yaml_loader(tmp_path):
    path = tmp_path / "vq.yaml"
    path.write_text("vq:\n  channel_mult: [1, 2, 2, 4]\n  codebook_size: 512\nloss:\n  grad_operator: finite_difference\n")
    cfg = load_config(RunWithVQ, path)
    assert cfg.vq.grid_size == 32 and cfg.vq.codebook_size == 512 and cfg.loss.grad_operator == "finite_difference"
    with pytest.raises(RadllmError, match="image_size"):
        load_config(RunWithVQ, path, ["vq.image_size=68"])


def test_save_load_round_trip_is_identical(tmp_path):
    torch.manual_seed(4)
    model = VQModel(tiny_config())
    model.train()
    model(torch.rand(2, 1, 32, 32))  # move the usage EMA away from its initial value
    model.eval()
    directory = save_vq(model, tmp_path / "vq")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((directory / "config.json").read_text())
    assert meta["format"] == "radllm-vq" and meta["version"] == 1 and meta["channel_mult"] == [1, 2, 2, 2, 4]
    assert load_vq_config(directory) == model.config
    loaded = load_vq(directory)
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        codes = model.encode(x)
        assert torch.equal(loaded.encode(x), codes)
        assert torch.equal(loaded.decode_codes(codes), model.decode_codes(codes))
    first_hash = vq_weights_hash(directory)
    assert first_hash == hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    # Saving again replaces the directory atomically and leaves no temporary siblings behind.
    save_vq(VQModel(tiny_config()), directory)
    assert vq_weights_hash(directory) != first_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vq"]


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    model = VQModel(tiny_config())
    directory = save_vq(model, tmp_path / "vq")
    weights = directory / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])  # truncated download
    with pytest.raises(RadllmError, match="model.safetensors.*corrupt"):
        load_vq(directory)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(RadllmError, match="corrupt"):
        load_vq(directory)

    state = dict(model.state_dict())
    state.pop("quantizer.usage_share")
    state["extra.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    with pytest.raises(RadllmError, match="missing quantizer.usage_share.*unexpected extra.weight"):
        load_vq(directory)

    weights.write_bytes(good)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | {"codebook_size": 128}))
    with pytest.raises(RadllmError, match=r"quantizer.codebook.weight: shape \[64, 4\] in file, \[128, 4\] expected"):
        load_vq(directory)
    (directory / "config.json").write_text(json.dumps(config | {"format": "something-else"}))
    with pytest.raises(RadllmError, match="radllm-vq"):
        load_vq(directory)
    (directory / "config.json").write_text(json.dumps(config | {"version": 2}))
    with pytest.raises(RadllmError, match="version 2"):
        load_vq_config(directory)
    (directory / "config.json").write_text(json.dumps(config | {"colour": "red"}))
    with pytest.raises(RadllmError, match="colour"):
        load_vq_config(directory)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(RadllmError, match="config.json.*JSON"):
        load_vq_config(directory)
    with pytest.raises(RadllmError, match="not a VQ checkpoint directory"):
        load_vq(tmp_path / "nowhere")
    weights.unlink()
    with pytest.raises(RadllmError, match="missing VQ weights"):
        vq_weights_hash(directory)
