"""VQ-GAN training recipe: data order, resume exactness, 2-rank sync via the deepspeed launcher (its LR schedule: test_recipe)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from launching import run_group
from safetensors.torch import load_file

from radllm.cli import main as cli_main
from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.recipe.checkpoint_dirs import complete_checkpoints
from radllm.vq import load_vq
from radllm.imaging.png import to_uint8
from radllm.vq.data import ImageStream, epoch_batches, load_image_cache, manifest_images
from radllm.vq.train_config import VQTrainConfig
from radllm.vq.training import STATE_FILENAME, VQTrainer, weights_checksum
from vq_fixtures import tiny_train_config, write_image_set

REPO = Path(__file__).resolve().parents[1]


def test_epoch_batches_split_ranks_disjointly_and_evenly() -> None:
    r0 = epoch_batches(10, 2, seed=3, epoch=0, rank=0, world_size=2)
    r1 = epoch_batches(10, 2, seed=3, epoch=0, rank=1, world_size=2)
    assert len(r0) == len(r1) == 2  # 5 per rank -> 2 full batches each
    flat0, flat1 = sum(r0, []), sum(r1, [])
    assert not set(flat0) & set(flat1)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003)).tolist()
    assert flat0 == perm[0::2][:4] and flat1 == perm[1::2][:4]
    assert epoch_batches(10, 2, 3, 0, 0, 2) == r0  # deterministic
    assert epoch_batches(10, 2, 3, 1, 0, 2) != r0  # reshuffled per epoch


def test_epoch_batches_too_few_images_is_a_clear_error() -> None:
    from radllm.errors import RadllmError

    with pytest.raises(RadllmError, match="fewer than one batch of 8"):
        epoch_batches(10, 8, 0, 0, 0, 2)


def test_image_cache_matches_load_image_to_one_grey_level(tmp_path: Path) -> None:
    from radllm.imaging import load_image

    manifest = write_image_set(tmp_path, n_train=3, n_test=1)
    items = manifest_images(manifest, "train")
    cache = load_image_cache(items, 16, progress=False)
    direct = torch.stack([load_image(i.path, 16) for i in items])
    assert cache.batch([0, 1, 2]).shape == (3, 1, 16, 16)
    assert (cache.batch([0, 1, 2]) - direct).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize("workers", [0, 2])
def test_image_stream_follows_the_epoch_order_resumes_exactly_and_skips_unreadable_images(tmp_path: Path, workers: int) -> None:
    from radllm.imaging import load_image

    items = manifest_images(write_image_set(tmp_path, n_train=24, n_test=1), "train")
    broken = epoch_batches(24, 4, seed=3, epoch=0, rank=1, world_size=2)[1][2]
    items[broken].path.write_bytes(b"not a png")
    stream = ImageStream(items, 16, batch_size=4, seed=3, rank=1, world_size=2, num_workers=workers)
    taken = [next(batches) for batches in [stream.batches(0, 0)] for _ in range(7)]  # 3 batches per epoch
    assert [position for position, _, _ in taken] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1)]
    for (epoch, index), pixels, unreadable in taken:
        indices = epoch_batches(24, 4, seed=3, epoch=epoch, rank=1, world_size=2)[index - 1]
        expected = [torch.from_numpy(to_uint8(load_image(items[i].path, 16))).view(1, 16, 16) for i in indices if i != broken]
        assert pixels.dtype == torch.uint8 and torch.equal(pixels, torch.stack(expected))
        assert unreadable == (broken in indices)
    assert taken[1][2] == 1 and taken[1][1].shape == (3, 1, 16, 16)  # the spoiled image's batch
    resumed = next(stream.batches(1, 1))  # continue after the 4th batch, as a checkpoint there would
    assert resumed[0] == taken[4][0] and torch.equal(resumed[1], taken[4][1])


def test_training_images_are_read_as_their_batches_come_and_unreadable_ones_are_counted(tmp_path: Path) -> None:
    """Nothing of the training set is decoded before the first step: an image spoiled after setup
    is left out of its batch (and counted) when that batch comes."""
    manifest = write_image_set(tmp_path / "data")
    config = load_config(VQTrainConfig, tiny_train_config(manifest, tmp_path / "run", schedule={"max_steps": 3, "eval_every": 100, "save_every": 100}))
    trainer = VQTrainer(config, progress=False)
    trainer.setup()
    items = manifest_images(manifest, "train")
    items[epoch_batches(len(items), 4, seed=0, epoch=0)[1][0]].path.write_bytes(b"spoiled")
    summary = trainer.train()
    assert summary["step"] == 3 and summary["images_unreadable"] == 1 and summary["samples_seen"] == 3 * 4 - 1
    for item in items:
        item.path.write_bytes(b"gone")
    trainer.config.schedule.max_steps = 20  # train on: every batch from here on is unreadable
    with pytest.raises(RadllmError, match=r"10 batches in a row held no readable image .*manifest.jsonl"):
        trainer.train()
    assert trainer.state.step == 3


def _poisoned_trainer(tmp_path: Path, poisoned_steps: set[int], **schedule: int) -> VQTrainer:
    """A tiny trainer whose generator loss is multiplied by NaN at `poisoned_steps` (a fault injected
    at the one place a real one, e.g. an overflowing image or loss term, would surface)."""
    manifest = write_image_set(tmp_path / "data")
    config_path = tiny_train_config(manifest, tmp_path / "run", schedule={"max_steps": 6, "eval_every": 100, "save_every": 100, **schedule})
    trainer = VQTrainer(load_config(VQTrainConfig, config_path), progress=False)
    trainer.setup()
    real = trainer.loss_fn.generator_loss

    def poisoned(*args, **kwargs):
        loss, metrics = real(*args, **kwargs)
        return (loss * float("nan"), metrics) if trainer.state.step in poisoned_steps else (loss, metrics)

    trainer.loss_fn.generator_loss = poisoned
    return trainer


def test_non_finite_gradient_skips_the_update_and_is_counted(tmp_path: Path) -> None:
    trainer = _poisoned_trainer(tmp_path, {2, 3})
    for _ in range(2):  # steps 0, 1: applied
        trainer.train_step(trainer.next_batch())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for _ in range(2):  # steps 2, 3: NaN loss, skipped
        trainer.train_step(trainer.next_batch())
    after = trainer.model.state_dict()
    for name, value in before.items():
        if name != "quantizer.usage_share":  # usage statistics follow the forward, not the update
            torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=name)
    assert trainer.state.nonfinite_skipped == 2 and trainer.state.nonfinite_in_row == 2
    summary = trainer.train()  # steps 4, 5 are applied again
    assert summary["nonfinite_skipped"] == 2 and trainer.state.nonfinite_in_row == 0
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())


def test_too_many_non_finite_steps_in_a_row_abort_clearly(tmp_path: Path) -> None:
    trainer = _poisoned_trainer(tmp_path, {1, 2, 3}, max_nonfinite_steps=3)
    with pytest.raises(RadllmError, match="3 consecutive steps with a non-finite gradient .last at step 3."):
        trainer.train()
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())


@pytest.mark.slow
def test_resume_continues_from_saved_step_with_same_result(tmp_path: Path) -> None:
    manifest = write_image_set(tmp_path / "data")
    full = tmp_path / "full"
    workers = {"num_workers": 2}  # prefetching workers must not move the resume position
    assert cli_main(["vq-train", "--config", str(tiny_train_config(manifest, full, data=workers)), "--no-progress"]) == 0
    assert [p.name for p in complete_checkpoints(full, STATE_FILENAME)] == ["step_0000002", "step_0000004"]

    resumed = tmp_path / "resumed"
    shutil.copytree(full / "checkpoints" / "step_0000002", resumed / "checkpoints" / "step_0000002")
    assert cli_main(["vq-train", "--config", str(tiny_train_config(manifest, resumed, data=workers)), "--resume", "--no-progress"]) == 0

    state = json.loads((resumed / "checkpoints" / "step_0000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["samples_seen"] == 4 * 4
    a = load_file(str(full / "checkpoints" / "step_0000004" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step_0000004" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    da = load_file(str(full / "checkpoints" / "step_0000004" / "discriminator.safetensors"))
    db = load_file(str(resumed / "checkpoints" / "step_0000004" / "discriminator.safetensors"))
    for name in da:
        torch.testing.assert_close(db[name], da[name], rtol=1e-5, atol=1e-6, msg=name)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, resumed))
    for key in ("l1", "grad", "total", "d_loss"):
        assert sb["train"][key] == pytest.approx(sa["train"][key], rel=1e-4, abs=1e-6), key
    assert sb["step"] == 4 and sb["samples_seen"] == 16
    # The exported VQ directory is loadable and holds the final weights.
    torch.testing.assert_close(load_vq(resumed / "vq").state_dict()["decoder.conv_out.weight"], b["decoder.conv_out.weight"])


@pytest.mark.slow
def test_two_ranks_via_deepspeed_launcher_stay_in_sync(tmp_path: Path) -> None:
    manifest = write_image_set(tmp_path / "data")
    out = tmp_path / "ddp"
    config = tiny_train_config(manifest, out, schedule={"rank_checksums": True, "max_steps": 3, "save_every": 10, "eval_every": 10, "revive_every": 1},
                                data={"num_workers": 1})
    launcher = Path(sys.executable).parent / "deepspeed"
    env = os.environ | {"DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [str(launcher), "--num_accelerators", "2", "--master_port", "29731", str(REPO / "tools" / "train_vqgan.py"), "--config", str(config), "--no-progress"]
    result = run_group(cmd, cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    r0 = json.loads((out / "rank_checksums" / "rank_0.json").read_text())
    r1 = json.loads((out / "rank_checksums" / "rank_1.json").read_text())
    assert r0["step"] == r1["step"] == 3
    assert r0 == r1
    # Independent check: the exported model (rank 0) hashes to the value both ranks reported.
    assert weights_checksum(load_vq(out / "vq")) == r0["model"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_seen"] == 3 * 4 * 2  # both ranks' batches counted
    assert not (out / "rank_checksums" / "rank_2.json").exists()
