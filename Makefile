# The habits a newcomer looks for: make run (the demo), make test, make lint, make bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv services run test test-unit lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml (the CPU build on these machines).
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $(STAMP)

venv: $(STAMP)

services:
	tests/support/ensure_postgres.sh

run: venv
	$(BIN)/hpo demo

test: venv services
	$(BIN)/pytest

test-unit: venv
	$(BIN)/pytest tests/unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv services
	$(BIN)/python -m bench.report_latency
	$(BIN)/python -m bench.broker_options

clean:
	rm -rf $(VENV) .hpo .hpo-demo .pytest_cache .mypy_cache .ruff_cache
