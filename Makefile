# Two entry points that do all the set-up on a fresh machine:
#   make demo   quickstart: compare bp, fa, dfa and usf on mlp and dense-mlp (digits, no download)
#   make test   lint (ruff) and the test suite (pytest)
# The torch pin is the CPU wheel this project is developed with; override it elsewhere, e.g. TORCH=torch.
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bioplausible demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/step_time.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
