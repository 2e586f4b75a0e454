# labq: `make run` starts the embedded stack; `make test` runs the whole suite.
# Both work on a fresh machine with Python 3.11+, make and the package registry.
# Dependencies come from requirements.lock (exactly the tested versions); `make lock` remakes it
# from the ranges in pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast test-unit lint format lock bench gpu-check clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/labq up

# Everything: unit, in-process API, live stacks on SQLite and PostgreSQL, browser, contract.
test: $(STAMP)
	bash scripts/test.sh

# No TensorFlow and no live stack: route rules in process, spec/sweep/report logic (< 1 min).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not tf" tests/unit tests/api

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock:
	$(PYTHON) -m pip install -q pip-tools
	$(PYTHON) -m piptools compile -q --extra cpu --extra test --strip-extras \
	  --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

bench: $(STAMP)
	$(BIN)/labq bench

# The GPU leg: builds here the wheelhouse .whl/ (CPython 3.12, manylinux x86_64: what the GPU
# machine lacks) and .gpu-data/ (MNIST, compressed), runs scripts/gpu_check.sh here (no GPU: it
# says so and exits 0), and prints the one command to run there with .whl and .gpu-data carried.
gpu-check: $(STAMP)
	bash scripts/gpu_wheelhouse.sh
	bash scripts/gpu_check.sh
	@echo "On the GPU machine, from the repository root, with .whl and .gpu-data carried:"
	@echo "  bash scripts/gpu_check.sh"

# Build outputs only: the data directory (runs, tokens, queued jobs) is never deleted here.
clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
