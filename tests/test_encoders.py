"""CXR encoders: xrv DenseNet-121 layout, feature gradients, metrics, agreement, small-cnn training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml
from PIL import Image

from radllm.cli import main
from radllm.encoders import CXREncoder, EncoderSpec, clinical_agreement, load_cxr_encoder, save_cxr_encoder
from radllm.encoders.metrics import binary_auroc, choose_threshold
from radllm.errors import RadllmError
from radllm.labels import OBSERVATIONS, validate_labels
from radllm.manifest import ImageRef, Report, Study, write_manifest

XRV_NAMES = [
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
    "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
    "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
]
# xrv output -> CheXpert observation, written out here independently of the library's table.
XRV_MAPPED = {
    "Atelectasis": "Atelectasis", "Consolidation": "Consolidation", "Pneumothorax": "Pneumothorax",
    "Edema": "Edema", "Effusion": "Pleural Effusion", "Pneumonia": "Pneumonia", "Cardiomegaly": "Cardiomegaly",
    "Lung Lesion": "Lung Lesion", "Fracture": "Fracture", "Lung Opacity": "Lung Opacity",
    "Enlarged Cardiomediastinum": "Enlarged Cardiomediastinum",
}
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def xrv_densenet121_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of TorchXRayVision's DenseNet-121 state dict, from the architecture itself."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batchnorm(prefix: str, channels: int) -> None:
        for name in BN_TENSORS:
            shapes[f"{prefix}.{name}"] = () if name == "num_batches_tracked" else (channels,)

    shapes["features.conv0.weight"] = (64, 1, 7, 7)
    batchnorm("features.norm0", 64)
    channels = 64
    for block, n_layers in enumerate((6, 12, 24, 16), start=1):
        for layer in range(1, n_layers + 1):
            prefix = f"features.denseblock{block}.denselayer{layer}"
            batchnorm(f"{prefix}.norm1", channels)
            shapes[f"{prefix}.conv1.weight"] = (4 * 32, channels, 1, 1)
            batchnorm(f"{prefix}.norm2", 4 * 32)
            shapes[f"{prefix}.conv2.weight"] = (32, 4 * 32, 3, 3)
            channels += 32
        if block < 4:
            batchnorm(f"features.transition{block}.norm", channels)
            shapes[f"features.transition{block}.conv.weight"] = (channels // 2, channels, 1, 1)
            channels //= 2
    batchnorm("features.norm5", channels)
    shapes["classifier.weight"] = (18, channels)
    shapes["classifier.bias"] = (18,)
    assert channels == 1024
    return shapes


def xrv_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but well-conditioned weights with xrv's exact names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in xrv_densenet121_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = torch.randn(shape, generator=gen) * 0.1
        elif ".norm" in key:  # batchnorm weight
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:  # conv / linear weight, He-scaled so activations stay finite through 121 layers
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
    return state


# chex-like operating points: NaN marks outputs the weights were not trained on.
OP_THRESHS = [0.2, 0.06, math.nan, 0.05, math.nan, math.nan, math.nan, 0.27, 0.08, math.nan,
              0.2, math.nan, math.nan, math.nan, 0.1, 0.09, 0.33, math.nan]


def test_xrv_key_count_matches_densenet121_structure():
    shapes = xrv_densenet121_shapes()
    n_dense_layers = 6 + 12 + 24 + 16
    assert n_dense_layers == 58
    # conv0 + norm0 + 58 x (2 norms + 2 convs) + 3 transitions (norm + conv) + norm5 + classifier
    assert len(shapes) == 1 + 5 + n_dense_layers * (2 * 5 + 2) + 3 * (5 + 1) + 5 + 2 == 727


@pytest.fixture(scope="module")
def xrv_file(tmp_path_factory):
    state = xrv_state_dict()
    state["op_threshs"] = torch.tensor(OP_THRESHS, dtype=torch.float32)
    path = tmp_path_factory.mktemp("xrv") / "xrv-densenet121.safetensors"
    safetensors.torch.save_file(state, str(path))
    return path, state


def test_xrv_layout_loads_strictly_and_maps_outputs(xrv_file):
    path, state = xrv_file
    encoder = load_cxr_encoder(path)
    loaded = encoder.backbone.state_dict()
    assert set(loaded) == set(xrv_densenet121_shapes())
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    # Only mapped outputs with a finite operating point, in CheXpert order.
    trained = {XRV_MAPPED[n] for n, t in zip(XRV_NAMES, OP_THRESHS) if n in XRV_MAPPED and not math.isnan(t)}
    assert encoder.label_names == [o for o in OBSERVATIONS if o in trained]
    assert "Edema" not in encoder.label_names and "Pleural Effusion" in encoder.label_names
    assert encoder.input_size == 224
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())

    x = torch.rand(1, 1, 96, 80)  # any size: resized to 224 inside
    maps = encoder.features(x)
    assert [tuple(m.shape) for m in maps] == [
        (1, 64, 112, 112), (1, 256, 56, 56), (1, 512, 28, 28), (1, 1024, 14, 14), (1, 1024, 7, 7)
    ]
    with torch.no_grad():
        raw = encoder.backbone.classify(maps[-1].detach())  # all 18 xrv outputs
        logits = encoder(x)
    assert raw.shape == (1, 18) and logits.shape == (1, len(encoder.label_names))
    for j, name in enumerate(encoder.label_names):
        xrv_index = next(i for i, n in enumerate(XRV_NAMES) if XRV_MAPPED.get(n) == name)
        torch.testing.assert_close(logits[:, j], raw[:, xrv_index])
        assert encoder.thresholds[j].item() == pytest.approx(OP_THRESHS[xrv_index])
    expected = (torch.sigmoid(logits) >= torch.tensor([OP_THRESHS[XRV_NAMES.index(n if n != "Pleural Effusion" else "Effusion")] for n in encoder.label_names])).long()
    assert torch.equal(encoder.predict_findings(x), expected)


def reference_densenet121(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """xrv's forward written with functional ops straight from the state dict: 18 logits."""
    F = torch.nn.functional

    def bn_relu(t, prefix):
        w, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        return F.relu(F.batch_norm(t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"], w, b, False, 0.0, 1e-5))

    x = F.conv2d(x, state["features.conv0.weight"], stride=2, padding=3)
    x = F.max_pool2d(bn_relu(x, "features.norm0"), 3, 2, 1)
    for block, n_layers in enumerate((6, 12, 24, 16), start=1):
        for layer in range(1, n_layers + 1):
            p = f"features.denseblock{block}.denselayer{layer}"
            y = F.conv2d(bn_relu(x, f"{p}.norm1"), state[f"{p}.conv1.weight"])
            y = F.conv2d(bn_relu(y, f"{p}.norm2"), state[f"{p}.conv2.weight"], padding=1)
            x = torch.cat([x, y], 1)
        if block < 4:
            p = f"features.transition{block}"
            x = F.avg_pool2d(F.conv2d(bn_relu(x, f"{p}.norm"), state[f"{p}.conv.weight"]), 2)
    x = bn_relu(x, "features.norm5").mean(dim=(2, 3))
    return F.linear(x, state["classifier.weight"], state["classifier.bias"])


def test_xrv_forward_matches_functional_reference(xrv_file):
    path, state = xrv_file
    encoder = load_cxr_encoder(path)
    x = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        expected = reference_densenet121(state, x * 2048 - 1024)
        raw = encoder.backbone.classify(encoder.features(x)[-1])
    torch.testing.assert_close(raw, expected, rtol=1e-4, atol=1e-4)


def test_xrv_input_is_scaled_to_plus_minus_1024(xrv_file):
    encoder = load_cxr_encoder(xrv_file[0])
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(1, 1, 224, 3).contiguous()
    x = torch.nn.functional.pad(x, (0, 221))
    prepared = encoder.prepare(x)
    assert prepared[0, 0, 0, :3].tolist() == [-1024.0, 0.0, 1024.0]


def test_xrv_torch_state_dict_and_old_files_without_counters(tmp_path):
    state = {k: v for k, v in xrv_state_dict(1).items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    encoder = load_cxr_encoder(path)
    assert len(encoder.label_names) == 11  # no op_threshs: every mapped output, threshold 0.5
    assert encoder.thresholds.tolist() == [0.5] * 11
    assert torch.equal(encoder.backbone.classifier.bias, state["classifier.bias"])


def test_xrv_bad_files_are_clear_errors(tmp_path):
    good = xrv_state_dict(2)
    missing = dict(good)
    del missing["features.denseblock3.denselayer5.conv2.weight"]
    safetensors.torch.save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(RadllmError, match=r"missing \(1\).*denseblock3\.denselayer5\.conv2\.weight"):
        load_cxr_encoder(tmp_path / "missing.safetensors")

    wrong = dict(good, **{"classifier.weight": torch.zeros(14, 1024), "classifier.bias": torch.zeros(14)})
    safetensors.torch.save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(RadllmError, match=r"wrong shape.*classifier\.bias \(14,\) != \(18,\)"):
        load_cxr_encoder(tmp_path / "wrong.safetensors")

    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_model.pt")  # a pickled module, like xrv's downloads
    with pytest.raises(RadllmError, match=r"never unpickles.*safetensors"):
        load_cxr_encoder(tmp_path / "whole_model.pt")

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RadllmError, match=r"garbage\.pt: not a readable torch state dict"):
        load_cxr_encoder(tmp_path / "garbage.pt")
    safetensors.torch.save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(RadllmError, match="not a TorchXRayVision DenseNet-121"):
        load_cxr_encoder(tmp_path / "other.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(RadllmError, match=r"unsupported weights format '\.onnx'"):
        load_cxr_encoder(tmp_path / "w.onnx")
    with pytest.raises(RadllmError, match="does not exist"):
        load_cxr_encoder(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(RadllmError, match="has no config.json"):
        load_cxr_encoder(tmp_path / "empty_dir")


def small_cnn_encoder(labels=("Cardiomegaly", "Pleural Effusion"), size=32, widths=(8, 16, 16)) -> CXREncoder:
    from radllm.encoders.architectures import build_backbone

    options = {"widths": list(widths)}
    spec = EncoderSpec(
        arch="small-cnn", label_names=list(labels), output_names=list(labels),
        output_indices=list(range(len(labels))), thresholds=[0.5] * len(labels), input_size=size,
        arch_options=options,
    )
    torch.manual_seed(0)
    return CXREncoder(build_backbone("small-cnn", len(labels), options, "test"), spec)


def test_features_give_gradients_to_the_input_of_a_frozen_encoder():
    encoder = small_cnn_encoder().freeze()
    x = torch.rand(2, 1, 48, 48, requires_grad=True)  # not the native 32 px: resized inside
    maps = encoder.features(x)
    assert [tuple(m.shape) for m in maps] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    sum(m.pow(2).mean() for m in maps).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        encoder.features(torch.rand(2, 3, 32, 32))


def test_saved_directory_round_trip(tmp_path):
    encoder = small_cnn_encoder()
    encoder.set_thresholds([0.3, 0.7])
    save_cxr_encoder(encoder, tmp_path / "enc", metrics={"val": 1})
    back = load_cxr_encoder(tmp_path / "enc")
    x = torch.rand(3, 1, 32, 32)
    assert torch.equal(back(x), encoder.eval()(x))
    assert back.label_names == ["Cardiomegaly", "Pleural Effusion"] and back.thresholds.tolist() == pytest.approx([0.3, 0.7])
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["arch"] == "small-cnn" and config["input_normalisation"] == {"scale": 2.0, "shift": -1.0}

    config["arch"] = "resnet-9000"
    (tmp_path / "enc" / "config.json").write_text(json.dumps(config))
    with pytest.raises(RadllmError, match=r"config\.json: unsupported encoder arch 'resnet-9000'"):
        load_cxr_encoder(tmp_path / "enc")
    config.update(arch="small-cnn", label_names=["Heart"])
    (tmp_path / "enc" / "config.json").write_text(json.dumps(config))
    with pytest.raises(RadllmError, match=r"label_names \['Heart'\]"):
        load_cxr_encoder(tmp_path / "enc")


class HalfMeans(torch.nn.Module):
    """Test backbone: logit 0 = mean of the top half, logit 1 = mean of the bottom half."""

    def feature_maps(self, x):
        return [x]

    def classify(self, last):
        h = last.shape[-2] // 2
        return torch.stack([last[..., :h, :].mean(dim=(1, 2, 3)), last[..., h:, :].mean(dim=(1, 2, 3))], dim=1)


def test_clinical_agreement_hand_computed():
    spec = EncoderSpec(
        arch="half-means", label_names=["Cardiomegaly", "Pleural Effusion"], output_names=["top", "bottom"],
        output_indices=[0, 1], thresholds=[0.5, 0.5], input_size=4, input_scale=1.0, input_shift=-0.5,
    )
    encoder = CXREncoder(HalfMeans(), spec)  # finding j = (mean of half j >= 0.5)
    top, bottom = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    top[:, :2], bottom[:, 2:] = 1.0, 1.0
    dark, bright = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    originals = torch.stack([top, dark, bright])  # findings [1,0], [0,0], [1,1]
    recons = torch.stack([bright, dark, bottom])  # findings [1,1], [0,0], [0,1]
    # agreeing pairs: image 0 -> 1 of 2, image 1 -> 2 of 2, image 2 -> 1 of 2  => 4 / 6
    assert clinical_agreement(encoder, originals, recons, batch_size=2) == pytest.approx(4 / 6)
    assert clinical_agreement(encoder, originals, originals) == 1.0
    with pytest.raises(ValueError, match="paired"):
        clinical_agreement(encoder, originals, recons[:2])


def test_finding_aurocs_per_finding_on_originals_and_reconstructions_hand_computed():
    from radllm.encoders import finding_aurocs

    spec = EncoderSpec(
        arch="half-means", label_names=["Cardiomegaly", "Pleural Effusion"], output_names=["top", "bottom"],
        output_indices=[0, 1], thresholds=[0.5, 0.5], input_size=4, input_scale=1.0, input_shift=-0.5,
    )
    encoder = CXREncoder(HalfMeans(), spec)  # finding j grows with the brightness of half j

    def image(top, bottom):
        x = torch.empty(1, 4, 4)
        x[:, :2], x[:, 2:] = top, bottom
        return x

    originals = torch.stack([image(0.9, 0.1), image(0.2, 0.8), image(0.7, 0.6), image(0.1, 0.3)])
    # The reconstructions keep the top half and lose the bottom one (flat 0.5 everywhere below).
    recons = torch.stack([image(0.9, 0.5), image(0.2, 0.5), image(0.7, 0.5), image(0.1, 0.5)])
    targets = [[1.0, 0.0], [0.0, 1.0], [1.0, None], [0.0, 0.0]]  # the third bottom label unknown
    result = finding_aurocs(encoder, originals, recons, targets, batch_size=3)
    # Top: positives (0.9, 0.7) outrank negatives (0.2, 0.1) in both sets.
    assert result["original"]["Cardiomegaly"] == 1.0 and result["reconstruction"]["Cardiomegaly"] == 1.0
    # Bottom, known rows 0, 1, 3: the positive 0.8 beats 0.1 and 0.3 on the originals; on the
    # reconstructions all three tie (0.5), so the positive wins half of each pair.
    assert result["original"]["Pleural Effusion"] == 1.0
    assert result["reconstruction"]["Pleural Effusion"] == pytest.approx(0.5)
    one_class = finding_aurocs(encoder, originals, recons, [[1.0, 0.0]] * 4)
    assert one_class["original"] == {"Cardiomegaly": None, "Pleural Effusion": None}
    with pytest.raises(ValueError, match="one target row per image pair"):
        finding_aurocs(encoder, originals, recons, targets[:3])


def naive_auroc(scores, targets):
    pos = [s for s, t in zip(scores, targets) if t]
    neg = [s for s, t in zip(scores, targets) if not t]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=40) / 5.0  # many ties
    targets = rng.integers(0, 2, size=40)
    assert binary_auroc(scores, targets) == pytest.approx(naive_auroc(scores, targets))
    assert binary_auroc(np.array([0.1, 0.2]), np.array([1, 1])) is None


def test_threshold_maximises_f1_and_accuracy():
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    targets = np.array([0, 0, 1, 0, 1, 1])
    # F1 by cut: >=0.3 -> tp3 fp1 -> 6/7; >=0.6 -> tp2 fp0 fn1 -> 4/5. Best: between 0.2 and 0.35.
    assert choose_threshold(scores, targets, "f1") == pytest.approx(0.275)
    # accuracy: cut 0.275 -> 5/6, cut 0.6 -> 5/6, cut 0.375 -> 4/6; equal best, the middle one of the run
    assert choose_threshold(scores, targets, "accuracy") in (pytest.approx(0.275), pytest.approx(0.6))
    assert choose_threshold(np.array([0.2, 0.4]), np.array([0, 0])) == pytest.approx(0.7)  # no positives


# --- small-cnn training on a synthetic labelled set -------------------------------------------

SIZE = 32


def synthetic_image(rng: np.random.Generator, blob: bool, band: bool) -> np.ndarray:
    """Dim noisy background; a bright disc somewhere ("Lung Lesion") and/or a bright bottom band ("Pleural Effusion")."""
    img = 0.25 + 0.08 * rng.standard_normal((SIZE, SIZE))
    if blob:
        cy, cx = rng.integers(6, SIZE - 14, size=2)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = 0.9
    if band:
        img[SIZE - 7 :, :] += 0.45
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_synthetic_set(root, counts=(("train", 64), ("val", 32), ("test", 32))):
    rng = np.random.default_rng(123)
    studies = []
    (root / "images").mkdir(parents=True)
    for split, n in counts:
        for i in range(n):
            blob, band = bool(i % 2), bool((i // 2) % 2)
            name = f"images/{split}_{i}.png"
            Image.fromarray(synthetic_image(rng, blob, band), mode="L").save(root / name)
            effusion = int(band)
            if split == "train" and i % 8 == 0:
                effusion = -1  # uncertain: masked out under the default policy
            labels = validate_labels({"Lung Lesion": int(blob), "Pleural Effusion": effusion, "No Finding": 0}, name)
            studies.append(Study(f"{split}{i}", [ImageRef(name, "PA")], Report(), labels=labels, split=split))
    write_manifest(root / "manifest.jsonl", studies)
    return root / "manifest.jsonl"


def write_config(path, manifest, out_dir, **extra):
    config = {
        "out_dir": str(out_dir),
        "data": {"manifest": str(manifest), "image_size": SIZE, "augment_shift": 2},
        "model": {"widths": [8, 16, 32]},
        "optim": {"epochs": 20, "batch_size": 16, "lr": 0.01, "warmup_steps": 5},
        "num_threads": 1,
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def synthetic_manifest(tmp_path_factory):
    return write_synthetic_set(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.slow
def test_small_cnn_learns_synthetic_findings(tmp_path, synthetic_manifest, capsys):
    config = write_config(tmp_path / "enc.yaml", synthetic_manifest, tmp_path / "enc")
    assert main(["train-cxr-encoder", "--config", str(config), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "enc" / "metrics.json").read_text())
    assert metrics["label_names"] == ["Lung Lesion", "Pleural Effusion"]  # "No Finding" is all negative
    assert "No Finding" in metrics["excluded_observations"]
    assert metrics["val"]["per_label"]["Pleural Effusion"]["n_positive"] == 16
    assert metrics["train"]["n_images"] == 64
    for name in ("Lung Lesion", "Pleural Effusion"):
        test = metrics["test"]["per_label"][name]
        assert test["auroc"] >= 0.95 and test["accuracy"] >= 0.9, (name, test)
    config_json = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config_json["thresholds"] == [metrics["val"]["per_label"][n]["threshold"] for n in config_json["label_names"]]
    assert (tmp_path / "enc" / "train_config.yaml").is_file()

    # Reloaded encoder reproduces the reported test accuracy with its stored thresholds.
    encoder = load_cxr_encoder(tmp_path / "enc")
    from radllm.imaging import load_image
    from radllm.manifest import read_manifest

    test_studies = [s for s in read_manifest(synthetic_manifest) if s.split == "test"]
    images = torch.stack([load_image(s.image_paths(synthetic_manifest.parent)[0], SIZE) for s in test_studies])
    findings = encoder.predict_findings(images)
    truth = torch.tensor([[s.labels["Lung Lesion"], s.labels["Pleural Effusion"]] for s in test_studies])
    accuracy = (findings == truth).float().mean(0).tolist()
    assert accuracy == pytest.approx([metrics["test"]["per_label"][n]["accuracy"] for n in ("Lung Lesion", "Pleural Effusion")], abs=1e-6)


def test_training_is_deterministic_given_seed(tmp_path, synthetic_manifest):
    from radllm.config import load_config
    from radllm.encoders.train_config import CXREncoderTrainConfig
    from radllm.encoders.training import train_cxr_encoder

    outputs = []
    for run in ("a", "b"):
        path = write_config(tmp_path / f"{run}.yaml", synthetic_manifest, tmp_path / run)
        train_cxr_encoder(load_config(CXREncoderTrainConfig, path, ["optim.epochs=1"]), progress=False)
        outputs.append(safetensors.torch.load_file(str(tmp_path / run / "model.safetensors")))
    assert outputs[0].keys() == outputs[1].keys()
    assert all(torch.equal(outputs[0][k], outputs[1][k]) for k in outputs[0])


def test_cli_config_errors_are_clear(tmp_path, synthetic_manifest, capsys):
    config = write_config(tmp_path / "enc.yaml", synthetic_manifest, tmp_path / "enc")
    assert main(["train-cxr-encoder", "--config", str(config), "--set", "optim.epoch=3"]) == 2
    assert "optim.epoch" in capsys.readouterr().err
    assert main(["train-cxr-encoder", "--config", str(config), "--set", "data.uncertain_policy=maybe"]) == 2
    assert "data.uncertain_policy = 'maybe'" in capsys.readouterr().err
    assert main(["train-cxr-encoder", "--config", str(config), "--set", f"data.manifest={tmp_path}/none.jsonl"]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err
    assert main(["train-cxr-encoder", "--config", str(config), "--set", "data.observations=[Edema]"]) == 2
    assert "'Edema' has 0 positive and 0 negative" in capsys.readouterr().err
    assert main(["train-cxr-encoder", "--config", str(config), "--set", "data.views=[LATERAL]"]) == 2
    assert "no usable 'train' images with views ['LATERAL']" in capsys.readouterr().err
    assert not (tmp_path / "enc").exists()
