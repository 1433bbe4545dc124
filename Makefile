# Two entry points for a fresh machine with Python 3.11+ and make:
#   make demo   runs the whole product on embedded emulators
#   make test   runs every check CI runs
# Each creates or updates its own virtual environment in .venv.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint typecheck layers pytest chaos bench sim clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rotator demo $(ARGS)

test: lint typecheck layers pytest

lint: $(STAMP)
	$(BIN)/ruff check rotator tests examples
	$(BIN)/ruff format --check rotator tests examples

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

# CI has two cores. Many tests wait in real time (chaos, end to end, demo), so
# eight workers keep both cores busy (six: both about 85 % busy, 10 s slower;
# four: 60 %, 35 s slower); each starts its own OpenBao dev server.
# --maxschedchunk 1 hands tests out one at a time: xdist otherwise gives each
# worker a quarter of its share in one consecutive block, and the real-time
# tests, collected first (tests/conftest.py), all went to the first worker.
PYTEST_WORKERS ?= 8

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxschedchunk 1 -rf $(PYTEST_ARGS)

chaos: $(STAMP)
	CHAOS_PROFILE=full $(BIN)/pytest tests/chaos $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m tests.perf $(ARGS)

sim: $(STAMP)
	$(BIN)/python -m tests.sim --profile full $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
