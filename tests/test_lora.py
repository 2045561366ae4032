"""LoRA / QLoRA through peft: what trains, what stays frozen, both export modes, clear errors.

Tiny LlamaForCausalLM built from a config (hidden 32, 2 layers); vocabulary rows 112..127 play the
new visual tokens. References are independent of peft's bookkeeping: a deep copy of the model
before LoRA, hand-built effective matrices, and plain transformers for the merged export.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from launching import run_group
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from radllm.atomic import atomic_directory
from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.training.lora import (
    DEFAULT_TARGET_MODULES,
    LoraSettings,
    apply_lora,
    check_lora_supported,
    export_lora,
    lora_anchor_parameters,
    quantization_config_4bit,
)

VOCAB = 128
NEW_IDS = list(range(112, 128))
OLD_IDS = list(range(112))
REPO = Path(__file__).resolve().parents[1]


def tiny_llama(tied: bool, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def settings(**kw) -> LoraSettings:
    return LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0, **kw)


def batch(seed: int = 1) -> torch.Tensor:
    """Sequences that use both old and new token ids (inputs and targets)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randint(0, 112, (2, 6), generator=g), torch.randint(112, VOCAB, (2, 6), generator=g)], 1)


def train(model, steps: int = 3) -> None:
    """A few AdamW steps (weight decay on) over the trainable parameters only, as the trainer does."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-2, weight_decay=0.1)
    x = batch()
    model.train()
    for _ in range(steps):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(params=[False, True], ids=["untied", "tied"])
def trained(request):
    """(original model copy, LoRA-trained PeftModel, tied?)."""
    tied = request.param
    base = tiny_llama(tied)
    original = copy.deepcopy(base)
    model = apply_lora(base, settings(), NEW_IDS)
    train(model)
    return original, model, tied


def test_only_adapters_and_new_rows_get_gradients(trained):
    original, model, tied = trained
    x = batch(seed=2)
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    requires = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == requires
    token_rows = {n for n in requires if "trainable_tokens_delta" in n}
    adapters = requires - token_rows
    assert all(".lora_A." in n or ".lora_B." in n for n in adapters)
    assert len(adapters) == 2 * 2 * len(DEFAULT_TARGET_MODULES)  # A and B, 2 layers, 7 projections
    # Untied: separate rows for the embedding and the head; tied: one shared set.
    assert len(token_rows) == (1 if tied else 2)
    for name in token_rows:
        assert tuple(model.get_parameter(name).shape) == (len(NEW_IDS), 32)


def test_old_rows_and_base_weights_unchanged_after_training(trained):
    original, model, tied = trained
    # Every frozen base tensor is bit-identical to the model before LoRA.
    before = original.state_dict()
    seen = set()
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" in name or "trainable_tokens" in name:
            continue
        key = name.replace(".token_adapter", "").replace(".base_layer", "")
        assert torch.equal(tensor, before[key]), name
        seen.add(key)
    assert seen == set(before)
    # The weights the model now uses: old rows are the pretrained ones, new rows moved.
    merged = model.merge_and_unload()
    for now, then in [(merged.get_input_embeddings().weight, original.get_input_embeddings().weight),
                      (merged.get_output_embeddings().weight, original.get_output_embeddings().weight)]:
        assert torch.equal(now[OLD_IDS], then[OLD_IDS])
        assert (now[NEW_IDS] - then[NEW_IDS]).abs().min() > 0  # every new row element trained
    if tied:
        assert torch.equal(merged.get_input_embeddings().weight, merged.get_output_embeddings().weight)
    else:
        assert not torch.equal(merged.get_input_embeddings().weight[NEW_IDS], merged.get_output_embeddings().weight[NEW_IDS])


def test_merge_export_loads_in_plain_transformers_with_same_logits(trained, tmp_path):
    _, model, tied = trained
    x = batch(seed=3)
    with torch.no_grad():
        expected = model(input_ids=x).logits
    with atomic_directory(tmp_path / "model") as tmp:
        export_lora(model, tmp, "merge")
    weights = load_file(tmp_path / "model" / "model.safetensors")
    assert not [k for k in weights if "lora" in k or "trainable_tokens" in k or "base_layer" in k]
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    assert type(reloaded) is LlamaForCausalLM
    assert reloaded.config.tie_word_embeddings == tied
    with torch.no_grad():
        got = reloaded(input_ids=x).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_adapter_export_reloads_with_peft(trained, tmp_path):
    _, model, tied = trained
    x = batch(seed=4)
    with torch.no_grad():
        expected = model(input_ids=x).logits
    export_lora(model, tmp_path / "adapter", "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    # Only the adapters and the new rows are stored, never a full embedding matrix.
    assert all(t.shape[0] in (4, 32, 64, len(NEW_IDS)) for t in weights.values()), {k: t.shape for k, t in weights.items()}
    assert sum("trainable_tokens_delta" in k for k in weights) == (1 if tied else 2)
    base = tiny_llama(tied)  # the same "pretrained" base, independently rebuilt
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        got = reloaded(input_ids=x).logits
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    # And the adapters matter: the bare base gives different logits.
    with torch.no_grad():
        assert not torch.allclose(tiny_llama(tied)(input_ids=x).logits, expected, atol=1e-3)


def test_export_rejects_unknown_mode(tmp_path):
    model = apply_lora(tiny_llama(False), settings(), NEW_IDS)
    with pytest.raises(RadllmError, match="merge.*adapter"):
        export_lora(model, tmp_path / "x", "full")


def test_anchor_parameters_are_exactly_the_lora_matrices():
    model = apply_lora(tiny_llama(False), settings(), NEW_IDS)
    listed = dict(lora_anchor_parameters(model))
    # Independent listing through peft's layer objects.
    expected = {}
    for module_name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            for attr in ("lora_A", "lora_B"):
                for adapter, sub in getattr(module, attr).items():
                    expected[f"{module_name}.{attr}.{adapter}.weight"] = sub.weight
    assert listed.keys() == expected.keys()
    assert all(listed[k] is expected[k] for k in expected)
    assert not [n for n in listed if "trainable_tokens" in n or "embed" in n or "lm_head" in n]


def test_without_new_token_rows_only_adapters_train():
    model = apply_lora(tiny_llama(True), settings(train_new_token_rows=False), NEW_IDS)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_target_modules_subset():
    model = apply_lora(tiny_llama(False), settings(target_modules=["q_proj", "v_proj"]), NEW_IDS)
    adapted = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert adapted == {"q_proj", "v_proj"}


@pytest.mark.parametrize(
    ("kwargs", "zero_stage", "cuda", "match"),
    [
        ({"quantize_4bit": True}, 3, True, r"lora\.quantize_4bit.*ZeRO stage 3.*zero2"),
        ({"quantize_4bit": True, "enabled": False}, 0, True, r"lora\.quantize_4bit=true needs lora\.enabled"),
        ({"r": 0}, 2, True, r"lora\.r=0"),
        ({"dropout": 1.0}, 2, True, r"lora\.dropout=1\.0"),
        ({"alpha": 0}, 2, True, r"lora\.alpha=0"),
        ({"target_modules": []}, 2, True, r"lora\.target_modules is empty"),
        ({}, 4, True, r"ZeRO stage 4"),
        ({}, 3, False, r"lora\.train_new_token_rows.*ZeRO-3.*zero2"),
    ],
)
def test_unsupported_settings_are_clear_errors(kwargs, zero_stage, cuda, match):
    values = {"enabled": True} | kwargs
    with pytest.raises(RadllmError, match=match):
        check_lora_supported(LoraSettings(**values), zero_stage=zero_stage, cuda_available=cuda)


@pytest.mark.parametrize(
    ("kwargs", "zero_stage", "cuda"),
    [({}, 0, False), ({}, 2, False), ({"train_new_token_rows": False}, 3, False), ({}, 3, True), ({"enabled": False}, 3, False),
     pytest.param({"quantize_4bit": True}, 2, False, marks=pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes"))],
)
def test_supported_settings_pass(kwargs, zero_stage, cuda):
    values = {"enabled": True} | kwargs
    check_lora_supported(LoraSettings(**values), zero_stage=zero_stage, cuda_available=cuda)


def test_qlora_without_bitsandbytes_or_with_one_lacking_cpu_kernels_is_clear_error(monkeypatch):
    import importlib.metadata

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "bitsandbytes" else find_spec(name, *args))
    with pytest.raises(RadllmError, match=r"needs bitsandbytes: pip install 'radllm\[qlora\]'"):
        check_lora_supported(settings(quantize_4bit=True), zero_stage=2, cuda_available=True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object() if name == "bitsandbytes" else find_spec(name, *args))
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.1")
    with pytest.raises(RadllmError, match=r"on CPU needs bitsandbytes >= 0\.50.*0\.45\.1 is installed"):
        check_lora_supported(settings(quantize_4bit=True), zero_stage=2, cuda_available=False)
    check_lora_supported(settings(quantize_4bit=True), zero_stage=2, cuda_available=True)  # CUDA kernels exist in older releases


def test_qlora_needs_a_4bit_loaded_model():
    with pytest.raises(RadllmError, match="not loaded in 4 bit.*quantization_config_4bit"):
        apply_lora(tiny_llama(False), settings(quantize_4bit=True), NEW_IDS)


def test_bad_targets_and_token_ids_are_clear_errors():
    with pytest.raises(RadllmError, match=r"\['qkv'\].*available.*q_proj"):
        apply_lora(tiny_llama(False), settings(target_modules=["q_proj", "qkv"]), NEW_IDS)
    with pytest.raises(RadllmError, match=r"\[128\].*128 rows"):
        apply_lora(tiny_llama(False), settings(), [127, 128])


def test_settings_load_as_strict_structured_config():
    loaded = load_config(LoraSettings, overrides=["enabled=true", "r=8", "target_modules=[q_proj,v_proj]"])
    assert loaded == LoraSettings(enabled=True, r=8, target_modules=["q_proj", "v_proj"])
    with pytest.raises(RadllmError, match="rank"):
        load_config(LoraSettings, overrides=["rank=8"])


def test_module_imports_without_bitsandbytes():
    code = (
        "import sys; sys.modules['bitsandbytes'] = None\n"
        "import radllm.training.lora as l; c = l.quantization_config_4bit()\n"
        "assert c.load_in_4bit and c.bnb_4bit_quant_type == 'nf4'\n"
        "assert 'radllm.training.loop' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes (the qlora extra)")
def test_qlora_trains_adapters_over_4bit_base(tmp_path):
    """bitsandbytes 0.50+ quantises to NF4 and runs 4-bit matmuls on CPU: QLoRA trains here."""
    cuda = torch.cuda.is_available()
    tiny_llama(False).save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base", quantization_config=quantization_config_4bit(torch.bfloat16 if cuda else torch.float32),
        device_map={"": 0 if cuda else "cpu"},
    )
    assert base.is_loaded_in_4bit and base.model.layers[0].self_attn.q_proj.weight.dtype == torch.uint8  # packed NF4
    check_lora_supported(settings(quantize_4bit=True), zero_stage=2, cuda_available=cuda)
    model = apply_lora(base, settings(quantize_4bit=True), NEW_IDS)
    embed_before = model.get_input_embeddings().weight.detach().clone()
    x = batch().to(base.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-2)
    losses = []
    for _ in range(5):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    embed_after = model.get_input_embeddings().weight.detach()  # the wrapper's view: base rows + trained delta
    old_rows = [i for i in range(embed_before.shape[0]) if i not in NEW_IDS]
    assert torch.equal(embed_after[old_rows], embed_before[old_rows])  # text rows frozen
    assert not torch.equal(embed_after[NEW_IDS], embed_before[NEW_IDS])  # the new token rows trained
    with pytest.raises(RadllmError, match="4-bit"):
        export_lora(model, tmp_path / "merged", "merge")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ds_config", "token_rows", "quantize_4bit"),
    [("zero2", True, False), ("zero3", False, False),
     pytest.param("zero2", True, True, marks=pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes"))],
)
def test_trainer_lora_run_exports_low_rank_updates_and_reloadable_adapter(tmp_path, ds_config, token_rows, quantize_4bit):
    """`deepspeed radllm/train.py` with LoRA or QLoRA (2 CPU ranks, λ_reg > 0), then both exports.

    Checked against the pretrained model itself: text rows and norms bit-identical, every adapted
    projection moved by a matrix of rank <= r, the visual rows trained (or, without
    `train_new_token_rows`, exactly their initial values); the adapter export over the resized
    pretrained base gives the merged export's logits. ZeRO-3 runs without token rows on CPU
    (see `check_lora_supported`). QLoRA trains over the NF4-quantised base (bitsandbytes' CPU
    kernels) and exports onto the full-precision base.
    """
    import os
    import socket

    from training_fixtures import make_training_artifacts, write_train_config

    from radllm.training.checkpoint import complete_checkpoints
    from radllm.training.config import TrainConfig
    from radllm.training.export import export_checkpoint
    from radllm.training.model import add_visual_rows
    from radllm.vocab import load_tokenizer

    # bitsandbytes' CPU 4-bit kernels need layers at least one quantisation block (64) wide.
    art = make_training_artifacts(tmp_path / "art", hidden=64 if quantize_4bit else 32)
    lora = {"enabled": True, "r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"],
            "train_new_token_rows": token_rows, "quantize_4bit": quantize_4bit}
    config_path = write_train_config(
        tmp_path / "lora.yaml", art, tmp_path / "run", deepspeed=f"ds_configs/{ds_config}.json", lora=lora,
        schedule={"max_steps": 4, "log_every": 1, "eval_every": 4, "save_every": 4, "keep_checkpoints": 1},
    )
    config = load_config(TrainConfig, config_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [str(Path(sys.executable).parent / "deepspeed"), "--num_accelerators", "2", "--master_port", str(port),
           str(REPO / "radllm" / "train.py"), "--config", str(config_path), "--no-progress"]
    result = run_group(cmd, cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    if quantize_4bit:
        assert "base weights in 4-bit NF4: 14 Linear4bit layers" in result.stdout + result.stderr  # 2 layers x 7 projections
    checkpoint = complete_checkpoints(tmp_path / "run")[-1]
    export_checkpoint(checkpoint, tmp_path / "merged", "merge")
    export_checkpoint(checkpoint, tmp_path / "adapter", "adapter")

    _, spec = load_tokenizer(art.tokenizer)
    pretrained = AutoModelForCausalLM.from_pretrained(art.pretrained).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert merged.config.vocab_size == spec.vocab_size
    assert merged.config.radllm_image_condition == "report"  # the run's tasks.image_condition, for generation
    initial = AutoModelForCausalLM.from_pretrained(art.pretrained)
    add_visual_rows(initial, spec.vocab_size, config.model.new_row_noise, config.seed)
    before, after, start = pretrained.state_dict(), merged.state_dict(), initial.state_dict()
    text = art.text_vocab
    new_rows = list(range(spec.token_offset, spec.token_offset + spec.codebook_size))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(after[name][:text], before[name])
        if token_rows:
            assert (after[name][new_rows] - start[name][new_rows]).abs().max() > 1e-3  # trained
        else:
            assert torch.equal(after[name][new_rows], start[name][new_rows])
    adapted = 0
    for name, weight in after.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            continue
        delta = weight - before[name]
        if any(f".{target}." in name for target in lora["target_modules"]):
            assert 0 < torch.linalg.matrix_rank(delta, atol=1e-6) <= lora["r"], name
            adapted += 1
        else:
            assert torch.equal(weight, before[name]), name
    assert adapted == 2 * 3

    base = AutoModelForCausalLM.from_pretrained(art.pretrained)
    add_visual_rows(base, spec.vocab_size, 0.0, 0)  # the resized rows come from the adapter directory
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    x = torch.tensor([[spec.boi_id, *new_rows[:4], spec.eoi_id, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=x).logits, merged(input_ids=x).logits, atol=1e-5, rtol=0)
