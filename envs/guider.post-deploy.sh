#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda env (`--sdm conda`), from the
# workflow's working directory: install the guider package of this checkout, so the
# rules' `guider ...` commands run the code next to the Snakefile.
set -euo pipefail
if [[ ! -f pyproject.toml || ! -d guider ]]; then
    echo "envs/guider.post-deploy.sh: run snakemake from the root of the guider repository" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation --editable .
