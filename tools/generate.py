"""`deepspeed tools/generate.py TASK ...` from a checkout: the same as `radllm generate TASK ...` (see `radllm generate --help`).

Installed, the same launch is `deepspeed --module radllm generate TASK ...`.
"""

from radllm.cli import main

COMMAND = "generate"

if __name__ == "__main__":
    raise SystemExit(main(command=COMMAND))
