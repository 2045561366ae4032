"""lambda_grad ablation: the same VQ-GAN run with the gradient term off (0) and at the config's value.

    .venv/bin/python benchmarks/vq_grad_ablation.py --config configs/demo/vq.yaml --out runs/bench/grad_ablation \
        [--steps 300] [--set key=value ...]

Both runs share data, seed and step budget (`--steps` overrides schedule.max_steps, and the
wall-clock budget is removed so both get exactly the same number of steps); each is evaluated
with `radllm.vq.evaluate.evaluate_vq` on the manifest's test split. Expectation: a lower
gradient-magnitude error (sharper edges) with the gradient term.
"""

from __future__ import annotations

import argparse
import logging

from radllm.config import load_config
from radllm.vq.evaluate import evaluate_vq
from radllm.vq.train_config import VQTrainConfig
from radllm.vq.training import train_vq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="VQ run config (e.g. configs/demo/vq.yaml)")
    parser.add_argument("--out", required=True, help="directory for both runs and their evaluations")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run (default 300)")
    parser.add_argument("--split", default="test", help="held-out split to evaluate (default test)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate at most N images")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = load_config(VQTrainConfig, args.config, args.overrides)
    results = {}
    for name, weight in (("lambda_grad=0", 0.0), (f"lambda_grad={base.loss.grad_weight:g}", base.loss.grad_weight)):
        tag = "grad_off" if weight == 0 else "grad_on"
        overrides = [
            *args.overrides, f"loss.grad_weight={weight}", f"schedule.max_steps={args.steps}", "schedule.max_minutes=null",
            f"output_dir={args.out}/{tag}", f"export_dir={args.out}/{tag}/vq", "resume=never",
        ]
        config = load_config(VQTrainConfig, args.config, overrides)
        train_vq(config, progress=True)
        results[name] = evaluate_vq(config.export_path, config.data.manifest, f"{args.out}/{tag}/eval", split=args.split, limit=args.limit, progress=False)
    print(f"\n{'run':16s} {'grad-mag error':>15s} {'PSNR dB':>8s} {'SSIM':>6s}")
    for name, m in results.items():
        print(f"{name:16s} {m['gradient_magnitude_error']:15.5f} {m['psnr']:8.2f} {m['ssim']:6.3f}")
    off, on = results.values()
    print(f"gradient-magnitude error ratio (on / off): {on['gradient_magnitude_error'] / off['gradient_magnitude_error']:.3f}")


if __name__ == "__main__":
    main()
