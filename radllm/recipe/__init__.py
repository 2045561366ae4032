"""What every training recipe shares: the LLM trainer, the VQ-GAN and the CXR encoder use these.

- `schedule`: linear warmup then cosine decay of the learning rate.
- `rng`: Python, NumPy and torch random states as JSON, saved in checkpoints and restored on resume.
- `checkpoint_dirs`: `run_dir/checkpoints/step_XXXXXXX/` naming, listing of complete ones, rotation.
- `nonfinite`: the abort after too many updates in a row skipped for a NaN/inf loss or gradient.

Nothing here imports a trainer (or DeepSpeed), so each trainer can depend on it.
"""
