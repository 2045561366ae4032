"""`deepspeed tools/tokenize_shards.py ...` from a checkout: the same as `radllm tokenize ...` (see `radllm tokenize --help`).

Installed, the same launch is `deepspeed --module radllm tokenize ...`.
"""

from radllm.cli import main

COMMAND = "tokenize"

if __name__ == "__main__":
    raise SystemExit(main(command=COMMAND))
