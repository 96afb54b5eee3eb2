# Two entry points that do all the set-up on a fresh machine:
#   make demo   quickstart: compare bp, fa, dfa and usf on mlp and dense-mlp (digits, no download)
#   make test   lint (ruff) and the test suite (pytest)
# The torch pin is the CPU wheel this project is developed with (on its machines); elsewhere the same pin from PyPI is
# the CUDA build: pass TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" for the CPU one.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bioplausible demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -n 2  # two pytest-xdist workers: most tests are one thread or a subprocess

bench: $(STAMP)
	$(PY) benchmarks/step_time.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
