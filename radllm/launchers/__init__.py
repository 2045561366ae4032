"""Multi-process launch entry points, one module per job, for the `deepspeed` launcher.

    deepspeed --num_gpus 8 --module radllm.launchers.generate reports ...        # installed radllm
    deepspeed --num_gpus 8 tools/generate.py reports ...                          # a checkout (shim)

`generate` (batch generation), `tokenize_shards` (VQ encoding into shards) and `train_vqgan`
(data-parallel VQ-GAN training) each take the arguments of the matching `radllm` subcommand; the
LLM trainer's entry point is `radllm.train`. They ship with the package so an installed radllm
launches them too; `tools/*.py` only forward to them.
"""
