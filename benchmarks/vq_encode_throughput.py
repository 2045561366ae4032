"""Tokenization throughput: images/s at batch 1 vs batch 64, on CPU and (when available) CUDA.

    .venv/bin/python benchmarks/vq_encode_throughput.py [--vq runs/demo/vq | --preset vq-f16-tiny] [--images 128]

Uses `radllm.vq.encode.encode_images`, the function `radllm vq-encode` runs. Without --vq a
randomly initialised model of the preset is timed (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time

import torch

from radllm.vq import VQModel, load_vq, vq_config_from_preset
from radllm.vq.encode import encode_images


def images_per_second(vq: VQModel, images: torch.Tensor, batch_size: int) -> float:
    """Throughput of `encode_images` over `images` [N, 1, S, S] after one warm-up batch."""
    list(encode_images(vq, images[:batch_size], batch_size))
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    n = sum(1 for _ in encode_images(vq, images, batch_size))
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vq", default=None, help="VQ directory (default: random weights of --preset)")
    parser.add_argument("--preset", default="vq-f16-tiny", help="architecture when --vq is not given")
    parser.add_argument("--images", type=int, default=128, help="images per measurement")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{'device':8s} {'batch 1 img/s':>14s} {'batch 64 img/s':>15s} {'ratio':>7s}")
    for device in devices:
        vq = load_vq(args.vq, device=device) if args.vq else VQModel(vq_config_from_preset(args.preset)).to(device).eval()
        size = vq.config.image_size
        images = torch.rand(args.images, 1, size, size, device=device)
        one = images_per_second(vq, images, 1)
        many = images_per_second(vq, images, 64)
        print(f"{device:8s} {one:14.1f} {many:15.1f} {many / one:7.2f}")


if __name__ == "__main__":
    main()
