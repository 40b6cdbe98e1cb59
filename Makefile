# Quick start: `make test` and `make demo`. Both create .venv when missing and install
# the project into it first (pip takes torch 2.14.1 / torchvision 0.29.1 as pinned).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test test-fast demo bench clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## every test, slow ones included (what CI runs)
test: $(STAMP)
	$(BIN)/pytest -q

## the fast subset, for the edit-test loop
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## the whole workflow on the embedded synthetic dataset (offline, CPU), then the HTML report
demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all --configfile config/demo.yaml
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report results/report.html
	@cat results/tables/main.md

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_epoch.py
