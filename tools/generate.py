"""`deepspeed tools/generate.py ...` from a checkout: the same as `deepspeed --module radllm.launchers.generate ...`."""

from radllm.launchers.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
