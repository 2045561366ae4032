"""`deepspeed tools/tokenize_shards.py ...` from a checkout: the same as `deepspeed --module radllm.launchers.tokenize_shards ...`."""

from radllm.launchers.tokenize_shards import main

if __name__ == "__main__":
    raise SystemExit(main())
