# One entry point for developers and CI.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel that lies on this machine's disk; a GPU host sets e.g. TORCH_SPEC='torch==2.13.0' with its CUDA index
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install test lint format demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e '.[ml,dev]'
	touch $@

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check app workers ml tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy app workers

format: install
	$(VENV)/bin/ruff format app workers ml tests bench
	$(VENV)/bin/ruff check --fix app workers ml tests bench

demo: install
	$(VENV)/bin/t2i-feedback demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache demo-data
