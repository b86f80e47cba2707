# kbwatch: `make demo` shows it, `make test` proves it, `make check` is what CI runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-unit test-e2e lint typecheck check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "kbwatch needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/kbwatch demo

test: venv
	$(BIN)/pytest -q

test-unit: venv
	$(BIN)/pytest -q -m 'not e2e'

test-e2e: venv
	$(BIN)/pytest -q -m e2e

lint: venv
	$(BIN)/ruff check streams tests
	$(BIN)/ruff format --check streams tests

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis kbwatch-data *.egg-info
