# Quick start: `make test` and `make demo`. Both create .venv when missing and install
# the project into it first (pip takes torch 2.14.1 / torchvision 0.29.1 as pinned).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install lint format test test-fast test-slurm demo report-check browser-tools bench clean-demo after-pull

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,browser]'
	touch $(STAMP)

install: $(STAMP)

## formatting and lint checks (ruff for Python, snakefmt for the workflow rules); part of `make test`
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules

## rewrite the tree in the checked format
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile workflow/rules

## lint, then every test, slow ones included (what CI runs)
test: lint
	$(BIN)/pytest -q

## the fast subset, for the edit-test loop
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## the SLURM tests on a throw-away single-node cluster (root; installs slurm-wlm, munge and
## MariaDB with apt-get when missing; skips, successfully, where that cannot be done)
test-slurm: $(STAMP)
	scripts/slurm_cluster.sh $(BIN)/pytest -q -m slurm tests/test_slurm_cluster.py; \
	status=$$?; if [ $$status -eq 77 ]; then echo "test-slurm: skipped (see the reason above)"; exit 0; fi; exit $$status

## the whole workflow on the embedded synthetic dataset (offline, CPU), then the HTML report
demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all --configfile config/demo.yaml
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report results/report.html
	@cat results/tables/main.md

## Chromium and chromedriver for the browser check: apt-get installs them when missing (root only; CI runs it)
browser-tools:
	scripts/browser_tools.sh

## open results/report.html in headless Chromium: the headline on the first page, every table rendered
## (needs Debian's chromium and chromium-driver; screenshots in results/report_shots)
report-check: $(STAMP)
	$(BIN)/python scripts/report_browser.py results/report.html --screenshots results/report_shots

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_epoch.py

## after `dvc pull` in a fresh clone: mark the pulled outputs of params.yaml's config up to date
after-pull: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" scripts/after_pull.sh
