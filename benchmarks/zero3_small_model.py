"""ZeRO-3 for a small model: `ds_configs/zero3.json` vs `ds_configs/zero3_small_model.json`, side by side.

    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/zero3_small_model.py            # after `make demo`
    DS_ACCELERATOR=cpu .venv/bin/python benchmarks/zero3_small_model.py --steps 60 --rounds 2

Runs the demo's stage-1 config through the real launcher (2 ranks, one thread each) for `--steps`
optimizer steps, once per DeepSpeed config and round, alternating the configs so drift in machine
load hits both alike. Evaluation, samples and grounding are off; the first 5 steps are dropped.
Printed: median step time per config, the ratio small_model/zero3, and whether the losses of the
two configs agree step by step (they should be identical: only where weights live changes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"zero3": "ds_configs/zero3.json", "small_model": "ds_configs/zero3_small_model.json"}


def run(config: str, run_dir: Path, demo: Path, steps: int, port: int) -> list[dict]:
    """One short stage-1 run; its train records from metrics.jsonl."""
    overrides = [
        f"tokenizer={demo / 'tokenizer'}", f"data.shards={demo / 'shards'}", f"model.init={demo / 'pretrain' / 'model'}",
        f"run_dir={run_dir}", f"deepspeed={config}", f"schedule.max_steps={steps}", "schedule.eval_every=1000000",
        "logging.sample_reports=0", "logging.grounding_studies=0",
    ]
    command = [str(Path(sys.executable).with_name("deepspeed")), "--num_accelerators", "2", "--master_port", str(port),
               "radllm/train.py", "--no-progress", "--config", "configs/demo/stage1.yaml", *[a for o in overrides for a in ("--set", o)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu")}
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("kind") == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo", help="a finished `make demo` directory (tokenizer, shards, pretrain)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=29641)
    args = parser.parse_args()
    demo = (REPO / args.demo).resolve()
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    losses: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, config in CONFIGS.items():
                records = run(config, Path(tmp) / f"{name}_{round_}", demo, args.steps, args.port)
                times[name] += [r["step_time"] for r in records[5:]]
                losses[name] = [r["loss"] for r in records]
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:12s} median step {value:.3f} s over {len(times[name])} steps ({CONFIGS[name]})")
    print(f"ratio small_model / zero3: {medians['small_model'] / medians['zero3']:.2f}")
    same = max(abs(a - b) for a, b in zip(losses["zero3"], losses["small_model"]))
    print(f"largest per-step loss difference: {same:.2e}")


if __name__ == "__main__":
    main()
