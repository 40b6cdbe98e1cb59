"""Where a result came from: the package version, the library versions and, for a checkout,
the git commit and whether the tree had uncommitted changes. Written into every metrics.json
(`versions`, `source`) and printed by `guider --version`."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import guider

PACKAGE_ROOT = Path(guider.__file__).resolve().parent.parent  # the checkout (or site-packages)


def versions() -> dict[str, str]:
    """The versions of the package and of the libraries a result depends on."""
    import numpy as np
    import ot
    import scipy
    import torch

    return {
        "guider": guider.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pot": ot.__version__,
    }


@functools.cache
def source() -> dict[str, Any]:
    """{"git_commit": hash or "not a git checkout", "git_dirty": True/False/None} of the code
    that runs (the checkout holding the imported package)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "not a git checkout", "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "guider", "workflow", "Snakefile")
    return {"git_commit": commit, "git_dirty": bool(status)}


def _git(*args: str) -> str | None:
    if not (PACKAGE_ROOT / ".git").exists():
        return None
    try:
        result = subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def version_line() -> str:
    """`guider --version`: the version, the commit (and whether it is dirty) and torch's."""
    import torch

    found = source()
    if found["git_dirty"] is None:
        where = found["git_commit"]
    else:
        where = found["git_commit"][:12] + (", uncommitted changes" if found["git_dirty"] else ", clean")
    return f"guider {guider.__version__} ({where}; torch {torch.__version__})"
