"""Running the repository's Snakefile from the tests: the command line and environment (the
jobs' `guider` is the one of this interpreter), shared by the workflow and SLURM tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.prefix) / "bin"


def snakemake_env(extra: dict | None = None) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


def snakemake_command(*args: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), *args]


def snakemake(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile and wait for it."""
    return subprocess.run(
        snakemake_command(*args), cwd=cwd, env=snakemake_env(env), capture_output=True, text=True, timeout=timeout
    )
