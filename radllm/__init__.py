"""radllm: train language models that read and draw chest X-rays.

The package is a library; `radllm` (console command), `radllm/train.py` and `tools/*.py` are thin
entry points over it.
"""

__version__ = "0.1.0"
