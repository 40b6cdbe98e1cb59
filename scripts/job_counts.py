"""The trainings and jobs of every shipped workflow config, as the docs quote them (generated,
never typed: tests/test_docs.py checks the docs hold these lines).

    python scripts/job_counts.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guider.study import Study  # noqa: E402

CONFIGS = ("config", "demo", "test", "noise_small", "tuning_small", "verdict", "amsc_raw")


def counts_line(name: str) -> str:
    study = Study.from_file(ROOT / "config" / f"{name}.yaml")
    runs = study.runs()
    points = sum(run.is_tuning for run in runs)
    jobs = sum(study.counts().values())
    trainings = f"{len(runs):,} trainings ({len(runs) - points:,} study runs + {points:,} grid points)"
    return f"`{name}.yaml`: {trainings}, {jobs:,} jobs"


def main() -> int:
    for name in CONFIGS:
        print(counts_line(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
