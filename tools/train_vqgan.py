"""`deepspeed tools/train_vqgan.py ...` from a checkout: the same as `deepspeed --module radllm.launchers.train_vqgan ...`."""

from radllm.launchers.train_vqgan import main

if __name__ == "__main__":
    raise SystemExit(main())
