"""`deepspeed tools/train_vqgan.py ...` from a checkout: the same as `radllm vq-train ...` (see `radllm vq-train --help`).

Installed, the same launch is `deepspeed --module radllm vq-train ...`.
"""

from radllm.cli import main

COMMAND = "vq-train"

if __name__ == "__main__":
    raise SystemExit(main(command=COMMAND))
