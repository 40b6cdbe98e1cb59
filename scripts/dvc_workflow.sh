#!/usr/bin/env bash
# The DVC stage's command (dvc.yaml): run the workflow on one config, render the HTML report,
# and make sure every output DVC versions exists even when this config does not produce it
# (no downloads for a synthetic config, no tuning without a tuning section): empty folders.
#   scripts/dvc_workflow.sh config/demo.yaml
set -euo pipefail
config="$1"
snakemake --cores all --configfile "$config"
snakemake --cores 1 --configfile "$config" --report results/report.html
mkdir -p resources results/tuning results/benchmarks
