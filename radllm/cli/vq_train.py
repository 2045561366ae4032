"""`radllm vq-train`: train the VQ-GAN image tokenizer, in one process or data-parallel (one per GPU).

    radllm vq-train --config configs/demo/vq.yaml [--set key=value ...] [--resume]
    deepspeed --num_gpus 8 --module radllm vq-train --config configs/vq/mimic_f16_256.yaml
    deepspeed --num_gpus 8 tools/train_vqgan.py --config ...     # the same from a checkout (shim)
    deepspeed --hostfile hosts --num_nodes 4 --num_gpus 8 tools/train_vqgan.py --config ...

On a machine without GPUs the DeepSpeed launcher would count NUMA nodes as devices, so name the
process count explicitly (`--num_gpus` is an alias of `--num_accelerators`):

    DS_ACCELERATOR=cpu deepspeed --num_accelerators 2 tools/train_vqgan.py --config configs/demo/vq.yaml

`torchrun --nproc_per_node 2 tools/train_vqgan.py ...` works too. Under a launcher each rank joins
the process group (nccl on GPU, gloo on CPU or with `device: cpu`) and calls
`radllm.vq.training.train_vq`; rank 0 alone writes logs, checkpoints and the export.
"""

from __future__ import annotations

import argparse
import json

from radllm.cli import add_run_config
from radllm.config import load_config

NAME = "vq-train"
HELP = "train the VQ-GAN image tokenizer (data-parallel under `deepspeed --module radllm vq-train`)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_run_config(parser, "configs/demo/vq.yaml", "schedule.max_steps=100 --set output_dir=runs/vq")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir (same as resume=auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    # Imported here so building the `radllm` parser stays light.
    from radllm.preemption import StopRequest
    from radllm.ranks import process_group
    from radllm.vq.train_config import VQTrainConfig
    from radllm.vq.training import train_vq

    overrides = [*args.overrides, *(["resume=auto"] if args.resume else [])]
    config = load_config(VQTrainConfig, args.config, overrides)
    stop = StopRequest()  # a signal or the launcher's exit: save the step, exit 75 (radllm.preemption)
    stop.install()
    with process_group(timeout_hours=2, cuda_allowed=config.device != "cpu") as ranks:
        summary = train_vq(config, ranks.rank, ranks.world_size, ranks.local_rank, progress=not args.no_progress, stop=stop)
    if ranks.rank == 0:
        print(json.dumps(summary, indent=2))
    return 0
