"""The LlamaGen VQ tokenizer: published key names, import from a `.pt`/`.safetensors`, refusals,
and a tiny pipeline (build-tokenizer -> `radllm tokenize` -> `radllm generate`) that runs on it.

A tiny architecture (32 px -> 8x8 codes of 64) with random weights stands in for `vq_ds16_c2i.pt`,
saved in the published layout: `torch.save({"model": state_dict, "ema": ..., "args": ...})`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import make_study_set
from safetensors.torch import save_file
from tokenizer_fixtures import make_base_tokenizer
from training_fixtures import make_pretrained

from radllm.cli import main
from radllm.data.sample import decode_study
from radllm.data.shards import iter_raw_samples, load_index
from radllm.errors import RadllmError
from radllm.imaging import load_image
from radllm.imaging.png import to_uint8
from radllm.vocab import load_tokenizer
from radllm.vocab.extend import build_tokenizer
from radllm.vocab_spec import SPEC_FILENAME
from radllm.vq.checkpoint import load_vq, tokenizer_geometry, vq_weights_hash
from radllm.vq.llamagen import LlamaGenConfig, LlamaGenVQ, import_llamagen, llamagen_config_from_preset
from radllm.vq.tokenizer import CodeGeometry, ImageTokenizer

TINY = {"ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1, "z_channels": 32, "codebook_size": 64, "codebook_embed_dim": 4}
SIZE = 32  # pixels; f = 4, so an 8x8 code grid


class NotATensor:
    """Any object outside tensors and plain containers: a weights-only load must refuse it."""


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaGenVQ(LlamaGenConfig(image_size=SIZE, **TINY)).state_dict()


def write_checkpoint(path: Path, state: dict[str, torch.Tensor], **extra: object) -> Path:
    """A checkpoint as LlamaGen's trainer writes it, with an EMA copy and its argparse options beside the model."""
    ema = {name: tensor + 1.0 for name, tensor in state.items()}
    torch.save({"model": state, "ema": ema, "steps": 400000, "args": argparse.Namespace(vq_model="VQ-16", image_size=256), **extra}, path)
    return path


def import_tiny(checkpoint: Path, out: Path) -> Path:
    return import_llamagen(checkpoint, out, image_size=SIZE, **TINY)


def test_the_architecture_has_the_published_tensor_names_and_vq16_sizes():
    names = tiny_state().keys()
    for name in ("encoder.conv_in.weight", "encoder.conv_blocks.0.downsample.conv.weight", "encoder.conv_blocks.2.attn.0.q.weight",
                 "encoder.mid.1.proj_out.weight", "encoder.norm_out.weight", "quant_conv.weight", "quantize.embedding.weight",
                 "quantize.codebook_used", "post_quant_conv.weight", "decoder.conv_blocks.0.attn.1.k.weight",
                 "decoder.conv_blocks.1.res.0.nin_shortcut.weight", "decoder.conv_blocks.0.upsample.conv.weight", "decoder.conv_out.weight"):
        assert name in names, name
    with torch.device("meta"):
        vq16 = LlamaGenVQ(llamagen_config_from_preset("vq-16"))
    shapes = {name: list(t.shape) for name, t in vq16.state_dict().items()}
    assert sum(p.numel() for p in vq16.parameters()) == 71_883_403  # LlamaGen's "72M" VQ-16
    assert shapes["quantize.embedding.weight"] == [16384, 8] and shapes["quantize.codebook_used"] == [65536]
    assert shapes["encoder.conv_in.weight"] == [128, 3, 3, 3] and shapes["decoder.conv_out.weight"] == [3, 128, 3, 3]
    assert shapes["quant_conv.weight"] == [8, 256, 1, 1] and shapes["encoder.conv_blocks.4.attn.1.q.weight"] == [512, 512, 1, 1]
    assert "encoder.conv_blocks.3.attn.0.q.weight" not in shapes  # attention only at the lowest resolution


def test_import_then_load_vq_gives_the_llamagen_tokenizer(tmp_path):
    state = tiny_state()
    vq_dir = import_tiny(write_checkpoint(tmp_path / "vq_ds16_c2i.pt", state), tmp_path / "vq")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vq", "vq_ds16_c2i.pt"]  # no temporary left behind
    config = json.loads((vq_dir / "config.json").read_text())
    assert config == {"format": "llamagen-vq", "version": 1, "image_size": SIZE, "codebook_show_usage": True, **TINY}
    assert tokenizer_geometry(vq_dir) == CodeGeometry(image_size=SIZE, grid=(8, 8), codebook_size=64)

    vq = load_vq(vq_dir)
    assert isinstance(vq, LlamaGenVQ) and isinstance(vq, ImageTokenizer) and not vq.training
    assert (vq.image_size, vq.grid, vq.codebook_size, vq.device) == (SIZE, (8, 8), 64, torch.device("cpu"))
    for name, tensor in state.items():
        assert torch.equal(vq.state_dict()[name], tensor), name  # "model", not "ema"

    x = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        codes = vq.encode(x)
        # Grayscale in [0, 1] is LlamaGen's RGB in [-1, 1] with three equal channels.
        direct = vq.quantize.codes(vq.quant_conv(vq.encoder(x.repeat(1, 3, 1, 1) * 2 - 1)))
        images = vq.decode_codes(codes)
        rgb = vq.decoder(vq.post_quant_conv(vq.quantize.lookup(codes)))
    assert codes.shape == (3, 8, 8) and codes.dtype == torch.long
    assert torch.equal(codes, direct) and int(codes.min()) >= 0 and int(codes.max()) < 64
    assert images.shape == (3, 1, SIZE, SIZE) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.allclose(images, ((rgb.clamp(-1, 1) + 1) / 2).mean(dim=1, keepdim=True))
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        vq.encode(torch.rand(1, 3, SIZE, SIZE))

    # The same weights as a .safetensors state dict import to the very same directory contents.
    save_file(state, str(tmp_path / "model.safetensors"))
    again = import_tiny(tmp_path / "model.safetensors", tmp_path / "vq-from-safetensors")
    assert vq_weights_hash(again) == vq_weights_hash(vq_dir) == hashlib.sha256((vq_dir / "model.safetensors").read_bytes()).hexdigest()


def test_unsafe_malformed_and_mismatched_checkpoints_are_refused(tmp_path):
    state = tiny_state()
    out = tmp_path / "vq"
    cases = [
        ({"model": state, "extra": NotATensor()}, r"refused: its pickle imports \['test_vq_llamagen.NotATensor'\].*weights_only=True"),
        ({"model": {**state, "encoder.conv_in.weight": "not weights"}}, r"'model' entry 'encoder.conv_in.weight' is a str, not a tensor"),
        ({"ema": state}, r"'model' state dict.*found \['ema'\]"),
        ({"model": {**state, "decoder.conv_out.weight": torch.zeros(3, 16, 3, 3)}},
         r"decoder.conv_out.weight: shape \[3, 16, 3, 3\] in file, \[3, 32, 3, 3\] expected by the LlamaGen vq-16 architecture"),
        ({"model": {k: v for k, v in state.items() if k != "quantize.embedding.weight"}}, r"missing quantize.embedding.weight"),
    ]
    for i, (obj, message) in enumerate(cases):
        torch.save(obj, tmp_path / f"case{i}.pt")
        with pytest.raises(RadllmError, match=message):
            import_tiny(tmp_path / f"case{i}.pt", out)
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "case1.pt").read_bytes()[:100])
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 10)
    for name in ("truncated.pt", "garbage.pt"):
        with pytest.raises(RadllmError, match="not a readable torch checkpoint"):
            import_tiny(tmp_path / name, out)
    with pytest.raises(RadllmError, match="no such checkpoint"):
        import_tiny(tmp_path / "nowhere.pt", out)
    checkpoint = write_checkpoint(tmp_path / "vq_ds16_c2i.pt", state)
    with pytest.raises(RadllmError, match="image_size=30.*multiple of the downsampling factor 4"):
        import_llamagen(checkpoint, out, image_size=30, **TINY)
    with pytest.raises(RadllmError, match="ch=24.*divisible by 32"):
        import_llamagen(checkpoint, out, image_size=SIZE, **(TINY | {"ch": 24}))
    assert not out.exists()

    vq_dir = import_tiny(checkpoint, out)
    config = json.loads((vq_dir / "config.json").read_text())
    (vq_dir / "config.json").write_text(json.dumps(config | {"codebook_size": 128}))
    with pytest.raises(RadllmError, match=r"quantize.embedding.weight: shape \[64, 4\] in file, \[128, 4\] expected by config.json"):
        load_vq(vq_dir)
    (vq_dir / "config.json").write_text(json.dumps(config | {"format": "taming-vq"}))
    with pytest.raises(RadllmError, match=r"'taming-vq'.*\['llamagen-vq', 'radllm-vq'\]"):
        load_vq(vq_dir)
    (vq_dir / "config.json").write_text(json.dumps(config | {"colour": "red"}))
    with pytest.raises(RadllmError, match=r"unknown LlamaGen VQ config field\(s\) \['colour'\]"):
        tokenizer_geometry(vq_dir)


def test_cli_import_vq(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["import-vq", "--help"])
    assert exit_info.value.code == 0 and "--llamagen CKPT" in capsys.readouterr().out
    checkpoint = write_checkpoint(tmp_path / "vq_ds16_c2i.pt", tiny_state())
    # The tiny stand-in is not VQ-16: the command names the tensors that differ, points at --preset and writes nothing.
    assert main(["import-vq", "--llamagen", str(checkpoint), "--out", str(tmp_path / "vq"), "--image-size", "256"]) == 2
    err = capsys.readouterr().err
    assert "weights do not match the LlamaGen vq-16 architecture: missing encoder.conv_blocks.0.res.1.norm1.weight" in err
    assert "choose its preset (one of ['vq-16', 'vq-8'])" in err
    assert not (tmp_path / "vq").exists()


# --- a tiny pipeline on the LlamaGen tokenizer ------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Tokenizer built for an imported LlamaGen VQ, an exported tiny model using it, a study set and its shards."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("llamagen")
    vq_dir = import_tiny(write_checkpoint(root / "vq_ds16_c2i.pt", tiny_state()), root / "llamagen-vq")
    tok_dir = root / "tokenizer"
    spec = build_tokenizer(make_base_tokenizer(root / "base"), vq_dir, tok_dir)
    assert (spec.codebook_size, spec.grid_height, spec.grid_width, spec.image_size) == (64, 8, 8, SIZE)
    tokenizer, spec = load_tokenizer(tok_dir)
    model_dir = make_pretrained(root / "model", spec.vocab_size, tokenizer.bos_token_id, tokenizer.eos_token_id)
    tokenizer.save_pretrained(model_dir)
    shutil.copy(tok_dir / SPEC_FILENAME, model_dir / SPEC_FILENAME)
    manifest = make_study_set(root / "data", n=4)
    shards = root / "shards"
    assert main(["tokenize", "--manifest", str(manifest), "--vq", str(vq_dir), "--tokenizer", str(tok_dir), "--out", str(shards),
                 "--shard-size", "2", "--batch-size", "3", "--device", "cpu", "--num-workers", "0", "--no-progress"]) == 0
    return {"root": root, "vq": vq_dir, "tokenizer": tok_dir, "model": model_dir, "manifest": manifest, "shards": shards}


def test_tokenize_writes_the_llamagen_codes_of_each_image(pipeline):
    index = load_index(pipeline["shards"])
    assert index.visual_vocab.vq_hash == vq_weights_hash(pipeline["vq"]) and index.num_samples("test") == 4
    vq = load_vq(pipeline["vq"])
    images = pipeline["manifest"].parent / "images"
    for shard in index.splits["test"]:
        with open(pipeline["shards"] / shard.name, "rb") as fh:
            for raw in iter_raw_samples(fh):
                study = decode_study(raw.key, raw.members)
                with torch.no_grad():
                    expected = vq.encode(load_image(images / f"{study.study_id}_0.png", SIZE)[None])[0].numpy()
                assert len(study.image_codes) == 1 and np.array_equal(study.image_codes[0], expected)


def test_generate_draws_images_with_the_llamagen_decoder_and_reads_its_codes(pipeline, tmp_path):
    common = ["--model", str(pipeline["model"]), "--vq", str(pipeline["vq"]), "--device", "cpu", "--no-progress", "--batch-size", "2"]
    out = tmp_path / "images"
    assert main(["generate", "images", *common, "--input", str(pipeline["shards"]), "--out", str(out), "--cfg-scale", "2", "--top-k", "8"]) == 0
    records = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    assert len(records) == 4
    vq = load_vq(pipeline["vq"])
    for record in records:
        assert record["codes_shape"] == [8, 8] and all(0 <= c < 64 for c in record["codes"])
        with torch.no_grad():
            expected = vq.decode_codes(torch.tensor(record["codes"]).view(1, 8, 8))[0]  # [1, 32, 32]
        assert (to_uint8(load_image(out / record["image"], SIZE)) == to_uint8(expected)).all()

    # Reports from the shards' codes equal reports from the images, encoded now by the LlamaGen tokenizer.
    report = ["generate", "reports", *common, "--max-new-tokens", "6"]
    assert main([*report, "--input", str(pipeline["shards"]), "--out", str(tmp_path / "from_shards.jsonl")]) == 0
    assert main([*report, "--input", str(pipeline["manifest"]), "--out", str(tmp_path / "from_images.jsonl")]) == 0
    reports = [[(r["study_id"], r["report"]) for r in map(json.loads, (tmp_path / name).read_text().splitlines())]
               for name in ("from_shards.jsonl", "from_images.jsonl")]
    assert reports[0] == reports[1] and len(reports[0]) == 4
