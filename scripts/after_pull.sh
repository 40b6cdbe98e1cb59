#!/usr/bin/env bash
# After `dvc pull` in a fresh clone: DVC restores the files but not their modification times,
# so Snakemake would redo everything. Mark the pulled outputs of the config the DVC stage ran
# (params.yaml workflow.configfile) up to date; `snakemake -n --configfile CONFIG` then has
# nothing to do.   scripts/after_pull.sh   (or: make after-pull)
set -euo pipefail
config="${1:-$(python3 -c 'import yaml; print(yaml.safe_load(open("params.yaml"))["workflow"]["configfile"])')}"
echo "marking the pulled outputs of $config up to date"
snakemake --touch --cores 1 --configfile "$config" --quiet
snakemake -n --configfile "$config" --quiet
