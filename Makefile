# The two commands of the README work on a fresh clone with Python 3.11+, no root, no Docker.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench reliability install clean

$(STAMP): pyproject.toml sdk/pyproject.toml devstack/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e './sdk[fastapi]' -e ./devstack -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/meterline dev up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench

reliability: $(STAMP)
	$(BIN)/python -m bench.reliability
	$(BIN)/pytest -q -s -m reliability  # full-size pieces: scale-out processes, the probes' p99 ratio, the money oracle
	METERLINE_RELIABILITY_WEBHOOK_KILLS=25 $(BIN)/pytest -q tests/notify/test_crash.py

clean:
	rm -rf $(VENV) .meterline .pytest_cache .mypy_cache .ruff_cache
