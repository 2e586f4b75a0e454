# labq: `make run` starts the embedded stack; `make test` runs the whole suite.
# Both work on a fresh machine with Python 3.11+, make and the package registry.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[cpu,test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/labq up

test: $(STAMP)
	bash scripts/test.sh

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

bench: $(STAMP)
	$(BIN)/labq bench

clean:
	rm -rf $(VENV) data build *.egg-info
