# radllm developer commands.  `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Without a GPU-built torch present, pin the CPU wheel so pip never pulls the multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?= -n 2 --timeout 900

.PHONY: venv test clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -e ".[dev,eval]"
	touch $@

venv: $(VENV)/.installed

test: venv
	DS_ACCELERATOR=cpu $(PY) -m pytest $(PYTEST_ARGS) tests

clean:
	rm -rf $(VENV) runs .pytest_cache
