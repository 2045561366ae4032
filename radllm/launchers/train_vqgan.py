"""Data-parallel VQ-GAN training: one process per GPU (or CPU process), same recipe as `radllm vq-train`.

    deepspeed --num_gpus 8 tools/train_vqgan.py --config configs/vq/mimic_f16_256.yaml [--set k=v ...] [--resume]
    deepspeed --num_gpus 8 --module radllm.launchers.train_vqgan ...   # the same from an installed radllm (no checkout)
    deepspeed --hostfile hosts --num_nodes 4 --num_gpus 8 tools/train_vqgan.py --config ...

On a machine without GPUs the DeepSpeed launcher would count NUMA nodes as devices, so name the
process count explicitly (`--num_gpus` is an alias of `--num_accelerators`):

    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/train_vqgan.py --config configs/demo/vq.yaml

`torchrun --nproc_per_node 2 tools/train_vqgan.py ...` works too. Each process reads RANK /
WORLD_SIZE / LOCAL_RANK from the launcher, joins the process group (nccl on GPU, gloo on CPU) and
calls `radllm.vq.training.train_vq`; rank 0 alone writes logs, checkpoints and the export.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from radllm.config import load_config
from radllm.errors import RadllmError
from radllm.vq.train_config import VQTrainConfig
from radllm.vq.training import train_vq


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML run config (see configs/demo/vq.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # passed by the deepspeed launcher
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank or 0))
    try:
        config = load_config(VQTrainConfig, args.config, [*args.overrides, *(["resume=auto"] if args.resume else [])])
    except RadllmError as err:
        print(f"train_vqgan.py: error: {err}", file=sys.stderr)
        return 2
    if world_size > 1:
        cuda = torch.cuda.is_available() and config.device != "cpu"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=2))
    try:
        summary = train_vq(config, rank, world_size, local_rank, progress=not args.no_progress)
    except RadllmError as err:
        print(f"train_vqgan.py (rank {rank}): error: {err}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
