"""Trainer building blocks without a launcher: config errors, DeepSpeed "auto" filling, checkpoint
selection and rotation, the LR schedule, per-task losses and the visual-row initialisation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from training_fixtures import make_training_artifacts, train_config_dict, write_train_config
from transformers import LlamaConfig, LlamaForCausalLM

from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.modeling import SUPPORTED_IMPLEMENTATIONS
from radllm.packing import causal_lm_loss, pack_examples, token_nll
from radllm.tasks import TaskExample
from radllm.train import main as train_main
from radllm.training.anchor import PretrainedWeights
from radllm.training.checkpoint import (
    COMPLETE, Layout, complete_checkpoints, mark_complete, prepare_save, read_resume_state, resolve_resume, rotate,
    saved_layout, write_rank_state,
)
from radllm.training.config import OptimOptions, TrainConfig
from radllm.training.data import LOSS_GROUPS, NO_GROUP, PROMPT_IMAGES, loss_groups, owned_streams
from radllm.training.ds_config import fill_ds_config, load_ds_json, offloads_optimizer
from radllm.training.loop import task_losses
from radllm.training.model import add_visual_rows, new_row_values
from radllm.training.optim import build_optimizer
from radllm.training.preflight import preflight
from radllm.vocab_spec import VisualVocabSpec, load_spec, save_spec


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_training_artifacts(tmp_path_factory.mktemp("units"), n_studies=12)


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(RadllmError) as info:
        preflight(load_config(TrainConfig, path, list(overrides)))
    return str(info.value)


def test_config_errors_name_the_key_or_file(artifacts, tmp_path):
    good = write_train_config(tmp_path / "good.yaml", artifacts, tmp_path / "run")
    assert preflight(load_config(TrainConfig, good)).spec.vocab_size % 64 == 0
    assert "optim.lrr" in error_of(good, "optim.lrr=1")  # unknown key
    assert "micro_batch_size" in error_of(good, "optim.micro_batch_size=two")  # wrong type
    assert "data.shards" in error_of(good, f"data.shards={tmp_path / 'nope'}")  # missing path
    assert "model.init" in error_of(good, f"model.init={tmp_path / 'nope'}")
    assert "anchor.lambda_reg" in error_of(good, "anchor.lambda_reg=1000")  # 2·lr·λ >= 1
    assert "data.eval_split" in error_of(good, "data.eval_split=test2")
    assert "no such DeepSpeed config" in error_of(good, "deepspeed=ds_configs/zero9.json")
    for kernel in SUPPORTED_IMPLEMENTATIONS:  # one list of kernels: the config takes every one the model side feeds
        load_config(TrainConfig, good, [f"model.attn_implementation={kernel}"]).validate()
    assert "model.attn_implementation" in error_of(good, "model.attn_implementation=paged_attention")
    if not torch.cuda.is_available():
        assert "FlexAttention has no backward pass on CPU" in error_of(good, "model.attn_implementation=flex_attention")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(yaml.safe_dump(train_config_dict(artifacts, tmp_path / "run", model={"init": str(artifacts.pretrained), "architecture": "x"})))
    assert "exactly one" in error_of(bad_yaml)
    # The entry point turns them into exit status 2 before any process group exists.
    assert train_main(["--config", str(good), "--set", "optim.lrr=1"]) == 2


def test_vocab_spec_mismatch_between_tokenizer_shards_and_model_is_refused(artifacts, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(artifacts.shards, shards)
    tokenizer_spec = load_spec(artifacts.tokenizer)
    import json

    index = json.loads((shards / "index.json").read_text())
    index["visual_vocab"]["vq_hash"] = "0" * 64
    (shards / "index.json").write_text(json.dumps(index))
    config = write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run", data__shards=str(shards))
    assert "vq_hash" in error_of(config)
    # A model exported with another spec (e.g. a stage-1 model of another tokenizer).
    model_dir = tmp_path / "model"
    shutil.copytree(artifacts.pretrained, model_dir)
    save_spec(type(tokenizer_spec)(**{**tokenizer_spec.to_json(), "codebook_size": 32}), model_dir)
    config = write_train_config(tmp_path / "d.yaml", artifacts, tmp_path / "run", model={"init": str(model_dir), "dtype": "float32"})
    assert "codebook_size" in error_of(config)


def test_ds_config_auto_fields_are_filled_from_run_and_model(artifacts, tmp_path):
    config = load_config(TrainConfig, write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run"))
    filled = fill_ds_config(load_ds_json("ds_configs/zero3_offload.json"), config.optim, world_size=4, hidden_size=64, bf16=True)
    assert filled["train_batch_size"] == 2 * 2 * 4 and filled["gradient_accumulation_steps"] == 2
    assert filled["bf16"]["enabled"] is True and filled["gradient_clipping"] == 1.0
    assert filled["zero_optimization"]["reduce_bucket_size"] == 64 * 64
    assert filled["zero_optimization"]["stage3_param_persistence_threshold"] == 640
    for name in ("zero2.json", "zero3.json", "zero3_small_model.json"):
        assert "auto" not in str(fill_ds_config(load_ds_json(f"ds_configs/{name}"), config.optim, 2, 32, False))
    bad = tmp_path / "bad.json"
    bad.write_text('{"optimizer": {"type": "Adam"}, "zero_optimization": {"stage": 3}}')
    with pytest.raises(RadllmError, match="optimizer"):
        load_ds_json(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"zero_optimization": {"stage": 3, "sub_group_size": "auto"}}')
    with pytest.raises(RadllmError, match="zero_optimization.sub_group_size"):
        fill_ds_config(load_ds_json(unknown), config.optim, 2, 32, False)


def test_offloaded_optimizer_is_deepspeed_cpu_adam_and_steps_like_torch_adamw():
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    from radllm.training.comm_op import prepare_op_builds

    assert offloads_optimizer(load_ds_json("ds_configs/zero3_offload.json"))
    assert not any(offloads_optimizer(load_ds_json(f"ds_configs/{name}")) for name in ("zero3.json", "zero2.json", "zero3_small_model.json"))
    prepare_op_builds()  # the op `radllm build-ops` compiled
    options = OptimOptions(lr=1e-2, weight_decay=0.1)
    results = []
    for offload in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
        optimizer, _ = build_optimizer(model, options, max_steps=10, cuda=False, offload=offload)
        assert isinstance(optimizer, DeepSpeedCPUAdam) == offload
        assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]  # matrices decay, vectors do not
        for step in range(3):
            for param in model.parameters():
                param.grad = torch.full_like(param, 0.1 * (step + 1))
            optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_streams_per_rank_set_the_accumulation_and_keep_the_global_batch(artifacts, tmp_path):
    config = load_config(TrainConfig, write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run"))  # micro 2, grad_accum 2
    assert [owned_streams(r, 2, 4) for r in (0, 1)] == [[0, 2], [1, 3]]
    assert owned_streams(0, 1, 2) == [0, 1]
    with pytest.raises(RadllmError, match="data.streams = 3 is not a multiple of the 2 ranks"):
        owned_streams(0, 2, 3)
    two_ranks = fill_ds_config(load_ds_json("ds_configs/zero3.json"), config.optim, world_size=2, hidden_size=32, bf16=False)
    one_rank = fill_ds_config(
        load_ds_json("ds_configs/zero3.json"), config.optim, world_size=1, hidden_size=32, bf16=False, streams_per_rank=2
    )
    assert (two_ranks["gradient_accumulation_steps"], one_rank["gradient_accumulation_steps"]) == (2, 4)
    assert two_ranks["train_batch_size"] == one_rank["train_batch_size"] == 2 * 2 * 2


def test_resume_state_of_each_stream_comes_from_the_rank_that_saved_it(artifacts, tmp_path):
    """A checkpoint of 2 ranks x 1 stream read by worlds of 1 and 4 ranks (4 streams: from 2 ranks x 2)."""
    config = load_config(TrainConfig, write_train_config(tmp_path / "c.yaml", artifacts, tmp_path / "run"))
    checkpoint = tmp_path / "step_0000004"
    checkpoint.mkdir()

    def write(world: int, streams: int, data_of) -> None:
        for rank in range(world):
            write_rank_state(checkpoint, rank, {
                "train": {"step": 4}, "rng": f"rng{rank}", "world_size": world, "streams": streams,
                "config_fingerprint": config.fingerprint(), "data": data_of(rank),
            })

    write(2, 2, lambda rank: {"streams": {str(rank): {"position": f"s{rank}"}}})
    assert saved_layout(checkpoint, config.fingerprint()) == Layout(world_size=2, streams=2)
    one = read_resume_state(checkpoint, config.fingerprint(), rank=0, owned=[0, 1])
    assert one == {"train": {"step": 4}, "rng": "rng0", "data": {0: {"position": "s0"}, 1: {"position": "s1"}}}
    write(2, 4, lambda rank: {"streams": {str(s): {"position": f"s{s}"} for s in (rank, rank + 2)}})
    fourth = read_resume_state(checkpoint, config.fingerprint(), rank=3, owned=[3])
    assert fourth == {"train": {"step": 4}, "rng": None, "data": {3: {"position": "s3"}}}  # rank 3 did not exist: no RNG state
    # A checkpoint from before data streams: each rank's file holds its one stream's state.
    write(2, 2, lambda rank: {"position": f"s{rank}"})
    old_style = read_resume_state(checkpoint, config.fingerprint(), rank=0, owned=[0, 1])
    assert old_style["data"] == {0: {"position": "s0"}, 1: {"position": "s1"}}
    other = load_config(TrainConfig, write_train_config(tmp_path / "d.yaml", artifacts, tmp_path / "run"), ["optim.lr=0.5"])
    with pytest.raises(RadllmError, match="different model/data/tasks/optim/anchor config"):
        read_resume_state(checkpoint, other.fingerprint(), rank=0, owned=[0, 1])


def test_resume_picks_the_newest_complete_checkpoint_and_rotation_keeps_k(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in ((2, True), (4, True), (6, True), (8, False)):
        (root / f"step_{step:07d}").mkdir(parents=True)
        if complete:
            (root / f"step_{step:07d}" / COMPLETE).write_text("")
    assert resolve_resume(tmp_path, "auto").name == "step_0000006"  # step 8 was killed mid-save
    assert resolve_resume(tmp_path, "never") is None
    with pytest.raises(RadllmError, match="COMPLETE"):
        resolve_resume(tmp_path, str(root / "step_0000008"))
    (root / "step_0000003").mkdir()  # incomplete and older than the newest complete one
    rotate(tmp_path, keep=2)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_0000004", "step_0000006"]
    assert sorted(p.name for p in root.iterdir()) == ["step_0000004", "step_0000006", "step_0000008"]
    assert resolve_resume(tmp_path / "empty", "auto") is None


def _save(run_dir: Path, step: int, payload: str) -> Path:
    """What `Trainer.save` does to the directory tree, with `payload` standing in for DeepSpeed's shards."""
    prepare_save(run_dir, step)
    path = run_dir / "checkpoints" / f"step_{step:07d}"
    path.mkdir(parents=True)
    assert not (path / COMPLETE).exists()  # no old marker while the new files are written
    (path / "shard").write_text(payload)
    mark_complete(path)
    rotate(run_dir, keep=2)
    return path


def test_rollback_then_resume_auto_continues_the_new_lineage(tmp_path):
    """Keep 500 and 1000, resume from 500, save 600 and 700: auto must pick 700, not the discarded 1000,
    and rotation must not delete the lineage being resumed."""
    for step in (500, 1000):
        _save(tmp_path, step, f"old {step}")
    assert resolve_resume(tmp_path, "auto").name == "step_0001000"
    (tmp_path / "checkpoints" / "step_0000600").mkdir()  # old run's save of 600, killed midway
    _save(tmp_path, 600, "new 600")
    _save(tmp_path, 700, "new 700")
    assert resolve_resume(tmp_path, "auto").name == "step_0000700"
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_0000700"
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_0000600", "step_0000700"]
    assert (tmp_path / "checkpoints" / "abandoned" / "step_0001000" / "shard").read_text() == "old 1000"  # kept, not lost

    # Saving over an existing complete tag (rolled back again, to 600): the old copy is set aside first.
    _save(tmp_path, 700, "newer 700")
    assert (tmp_path / "checkpoints" / "step_0000700" / "shard").read_text() == "newer 700"
    assert (tmp_path / "checkpoints" / "abandoned" / "step_0000700" / "shard").read_text() == "new 700"
    _save(tmp_path, 700, "newest 700")
    assert (tmp_path / "checkpoints" / "abandoned" / "step_0000700.1" / "shard").read_text() == "newer 700"


def test_lr_schedule_warmup_then_cosine_hand_values():
    _, schedule = build_optimizer(torch.nn.Linear(2, 2), OptimOptions(warmup_steps=4, min_lr_ratio=0.1), max_steps=104, cuda=False)
    lr_factor = schedule.lr_lambdas[0]  # the multiplier of the base lr, radllm.recipe.schedule.warmup_cosine
    assert lr_factor(0) == pytest.approx(0.25)
    assert lr_factor(3) == pytest.approx(1.0)
    assert lr_factor(4) == pytest.approx(1.0)
    assert lr_factor(54) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(104) == pytest.approx(0.1)
    assert lr_factor(500) == pytest.approx(0.1)


def test_task_losses_split_causal_lm_loss_by_task():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, 3, 4, -100, 5, 6], [-100, 1, -100, -100, -100, -100]])
    tasks = torch.tensor([[0, 0, 0, 1, 1, 1], [2, 2, -1, -1, -1, -1]])
    sums, counts, objective = task_losses(token_nll(logits, labels), labels, tasks)
    total, n = causal_lm_loss(logits, labels)
    assert float(sums.sum()) == pytest.approx(float(total), rel=1e-6) and float(counts.sum()) == int(n)
    assert float(objective) == pytest.approx(float(total), rel=1e-6)
    assert counts.tolist() == [2, 2, 1, 0, 0]  # LOSS_GROUPS: the four tasks, then prompt images
    # Task 1's targets are labels 5 and 6, predicted from positions 3 and 4 of row 0.
    expected = -torch.log_softmax(logits[0, 3], -1)[5] - torch.log_softmax(logits[0, 4], -1)[6]
    assert float(sums[1]) == pytest.approx(float(expected), rel=1e-6)
    # Loss weights scale each target's NLL in the objective only; the logged sums stay plain NLL.
    weights = torch.ones(2, 6)
    weights[0, 5], weights[1, 1] = 4.0, 0.5
    weighted_sums, _, weighted = task_losses(token_nll(logits, labels), labels, tasks, weights)
    nll_6 = -torch.log_softmax(logits[0, 4], -1)[6]
    nll_1 = -torch.log_softmax(logits[1, 0], -1)[1]
    assert torch.equal(weighted_sums, sums)
    assert float(weighted) == pytest.approx(float(total + 3.0 * nll_6 - 0.5 * nll_1), rel=1e-6)


@pytest.mark.parametrize("tie", [False, True])
def test_visual_rows_start_at_the_old_mean_plus_seeded_noise(tie, tmp_path):
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    old_embed = model.get_input_embeddings().weight.detach().clone()
    old_head = model.get_output_embeddings().weight.detach().clone()
    assert add_visual_rows(model, 128, noise=0.02, seed=7) == 50
    embed, head = model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()
    assert embed.shape == head.shape == (128, 16)
    torch.testing.assert_close(embed[:50], old_embed)
    for matrix, old in ((embed, old_embed), (head, old_head)):
        for token in (50, 99, 127):
            g = torch.Generator().manual_seed(7 * 0x9E3779B1 + token)
            expected = old.mean(0) + 0.02 * old.std() * torch.randn(16, generator=g)
            torch.testing.assert_close(matrix[token], expected)
    assert (head.data_ptr() == embed.data_ptr()) == tie
    # Rows depend on the token id only, not on how many rows are added.
    torch.testing.assert_close(new_row_values(old_embed, 60, 61, 0.02, 7)[0], embed[60])


def test_pretrained_weights_rebuild_resized_rows(tmp_path):
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    pretrained = LlamaForCausalLM(config)
    pretrained.save_pretrained(tmp_path / "pre")
    model = LlamaForCausalLM.from_pretrained(tmp_path / "pre")
    add_visual_rows(model, 128, noise=0.02, seed=3)
    names = {"model.embed_tokens.weight", "lm_head.weight"}
    reference = PretrainedWeights(tmp_path / "pre", names, noise=0.02, seed=3, include_new_rows=False)
    for name, param in model.named_parameters():
        value = reference(name, param)
        torch.testing.assert_close(value, param.detach(), msg=name)
        assert reference.pulled_elements(name, value) == (50 * 16 if name in names else param.numel())
    with_new_rows = PretrainedWeights(tmp_path / "pre", names, noise=0.02, seed=3, include_new_rows=True)
    head = model.get_output_embeddings().weight
    assert with_new_rows.pulled_elements("lm_head.weight", with_new_rows("lm_head.weight", head)) == 128 * 16


def test_rows_the_extended_tokenizer_added_are_not_pulled_even_when_pretrained_has_them(tmp_path):
    # The demo's "pretrained" LM is trained text-only with the extended tokenizer: its files
    # already hold the visual rows (never trained by text), which must stay free like new rows.
    config = LlamaConfig(vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "pre")
    names = {"model.embed_tokens.weight", "lm_head.weight"}
    reference = PretrainedWeights(tmp_path / "pre", names, noise=0.02, seed=3, include_new_rows=False, text_vocab_size=50)
    model = LlamaForCausalLM.from_pretrained(tmp_path / "pre")
    for name, param in model.named_parameters():
        assert reference.pulled_elements(name, reference(name, param)) == (50 * 16 if name in names else param.numel())
    everything = PretrainedWeights(tmp_path / "pre", names, noise=0.02, seed=3, include_new_rows=True, text_vocab_size=50)
    assert everything.pulled_elements("lm_head.weight", model.lm_head.weight) == 128 * 16


def test_loss_groups_log_prompt_images_apart_from_the_task():
    """Targets that are image tokens of a report/VQA example count as `prompt_images`; image
    generation keeps its own image targets; padding has no group."""
    spec = VisualVocabSpec(
        codebook_size=4, grid_height=1, grid_width=2, image_size=16, token_offset=10, boi_id=8, eoi_id=9, text_vocab_size=8, vocab_size=16
    )
    ignore = -100
    # report: <s> <boi> c c <eoi> | text text </s>, the codes and <eoi> made targets
    report = TaskExample([1, 8, 11, 12, 9, 3, 4, 2], [ignore, ignore, 11, 12, 9, 3, 4, 2], "report_generation", "a", [0, 0, 0.3, 0.3, 0.3, 1, 1, 1])
    image = TaskExample([1, 5, 8, 13, 10, 9], [ignore, ignore, 8, 13, 10, 9], "image_generation", "b")
    (row,) = pack_examples([report, image], 16, pad_id=0)
    groups = loss_groups([row], spec)[0].tolist()
    r, i, g = (LOSS_GROUPS.index(n) for n in ("report_generation", "image_generation", PROMPT_IMAGES))
    pad = NO_GROUP
    assert groups == [r, r, g, g, g, r, r, r, i, i, i, i, i, i, pad, pad]
