# Every target sets up its own virtualenv in .venv, so a fresh clone needs only Python 3.9+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo clean unasync

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever the dependency list changes.
$(STAMP): $(BIN)/python setup.cfg setup.py
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

# Two worker processes (pytest-xdist): CI's 2 cores. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# ruff reads no setup.cfg, so its few settings live here.
RUFF_OPTS := --line-length 100 --target-version py39

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_OPTS) --select E,F,W,I,UP,B,SIM,RUF --ignore UP006,UP007,UP035,UP045,RUF022 backendapi tests examples benchmarks scripts
	$(BIN)/ruff format $(RUFF_OPTS) --check backendapi tests examples benchmarks scripts
	$(BIN)/mypy --strict backendapi

# The blocking client is generated from the async one (scripts/unasync.py); `make test`
# fails while a generated file is stale.
unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py

demo: $(STAMP)
	$(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis

# `make bench`: the benchmark suite (docs/performance.md), a few minutes on 2 cores.
# `make bench BENCH_ARGS=--quick` is a smoke run; `python -m benchmarks --help` lists options.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(BIN)/python setup.cfg setup.py
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

.PHONY: bench
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
