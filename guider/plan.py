"""The study's cost before anyone runs it (`guider plan`).

The workflow's dry run (`snakemake -n -p -F`) lists every `guider train` it would start:
the studies' runs and the tuning grid points. Each is costed from a per-backbone table
measured by `benchmarks/bench_guider.py --costs-out` (or `bench_epoch.py --costs-out`):
seconds per training epoch for plain training and for GUIDER, and seconds per validation
evaluation, on the device the table was measured on. A run costs

    epochs x (s/epoch + s/eval / eval_every) + s/eval (the test evaluation)

where `epochs` is the mean `epochs_run` of finished runs of the same backbone and method
(results/runs, results/tuning) when there are any, else `--assume-epochs` (capped by the
run's `--epochs`). A method without its own row is costed as GUIDER when it distils from a
teacher (GUIDER's ablations, as_released), else as plain training.

Wall time for N GPUs x K jobs per GPU is GPU-hours / (N x min(K, 1 / share)), `share`
being the fraction of a card one job keeps busy (`--gpu-share`, default 0.25: a
Baby-size training on a large card): K jobs gain until the card is saturated, then only
queue. Measure runs per hour at 1, 4 and 8 jobs on your card and pass the share it
implies; the output says which numbers are measured and which assumed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COST_COLUMNS = ("backbone", "method", "device", "seconds_per_epoch", "seconds_per_eval")
_TRAIN = re.compile(r"guider train (.*)")


@dataclass(frozen=True)
class PlannedRun:
    dataset: str
    backbone: str
    method: str
    max_epochs: int | None
    tuning: bool  # a grid point (results/tuning/...), not a study run


def parse_dry_run(text: str) -> list[PlannedRun]:
    """The `guider train` commands of a `snakemake -n -p` listing."""
    runs = []
    for line in text.splitlines():
        match = _TRAIN.search(line)
        if not match:
            continue
        args = match.group(1).split()
        value = {flag: args[i + 1] for i, flag in enumerate(args[:-1]) if flag.startswith("--")}
        out = value.get("--out", "")
        epochs = value.get("--epochs")
        runs.append(
            PlannedRun(
                dataset=Path(value["--data"]).parts[2] if value.get("--data", "").startswith("results/data/") else "?",
                backbone=value["--backbone"],
                method=value.get("--method", "none"),
                max_epochs=int(epochs) if epochs else None,
                tuning=out.startswith("results/tuning/"),
            )
        )
    return runs


def dry_run(configfile: str | Path | None, root: str | Path, forceall: bool = True) -> str:
    """The workflow's dry-run listing (every job with -F, else only what is left to do)."""
    snakemake = shutil.which("snakemake") or shutil.which("snakemake", path=str(Path(sys.executable).parent))
    if snakemake is None:
        raise RuntimeError("guider plan needs snakemake (pip install the project's workflow extra)")
    command = [snakemake, "-n", "-p", "--cores", "1", "-s", str(Path(root) / "Snakefile")]
    command += ["-F"] if forceall else []
    command += ["--configfile", str(configfile)] if configfile else []
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(f"the workflow's dry run failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout + result.stderr


def read_costs(path: str | Path) -> pd.DataFrame:
    """The cost table; ValueError naming the file, and the row and column of a bad value."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV cost table ({err})") from None
    missing = [c for c in COST_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: not a cost table (missing columns {missing}; benchmarks/bench_guider.py --costs-out)"
        )
    for column in ("seconds_per_epoch", "seconds_per_eval"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~values.between(0, float("inf"), inclusive="left")
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(
                f"{path}: line {row + 2}: {column} is {table[column].iloc[row]!r}; costs are finite seconds >= 0"
            )
        table[column] = values
    return table


def finished_epochs(results: str | Path) -> dict[tuple[str, str], float]:
    """Mean epochs_run of finished runs and grid points, by (backbone, method)."""
    found: dict[tuple[str, str], list[int]] = {}
    for sub in ("runs", "tuning"):
        for path in Path(results, sub).rglob("metrics.json"):
            try:
                metrics = json.loads(path.read_text())
                key, epochs = (metrics["backbone"], metrics["method"]), int(metrics["epochs_run"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.setdefault(key, []).append(epochs)
    return {key: sum(v) / len(v) for key, v in found.items()}


def cost_row(costs: pd.DataFrame, backbone: str, method: str) -> tuple[pd.Series, str]:
    """(the row costing this run, which method's row it is)."""
    rows = costs[costs["backbone"] == backbone]
    if rows.empty:
        raise ValueError(f"the cost table has no row for backbone {backbone!r}; measure it with bench_guider.py")
    for candidate in (method, _family(method), "none"):
        hit = rows[rows["method"] == candidate]
        if not hit.empty:
            return hit.iloc[0], candidate
    raise ValueError(f"the cost table has no 'none' row for backbone {backbone!r}")


def _family(method: str) -> str:
    """'paper' for a method that distils from a teacher (GUIDER, its ablations, as_released:
    it has a `teacher` section), else 'none'."""
    from guider.objective import objective_class

    return "paper" if "teacher" in objective_class(method).sections else "none"


def project(
    runs: list[PlannedRun],
    costs: pd.DataFrame,
    epochs_seen: dict[tuple[str, str], float],
    assume_epochs: int,
    eval_every: int = 1,
) -> pd.DataFrame:
    """Per (backbone, method): runs, epochs per run (and whether measured), hours per run, total hours."""
    rows = []
    groups: dict[tuple[str, str], list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault((run.backbone, run.method), []).append(run)
    for (backbone, method), planned in groups.items():
        row, costed_as = cost_row(costs, backbone, method)
        seen = epochs_seen.get((backbone, method))
        caps = [r.max_epochs for r in planned if r.max_epochs is not None]
        epochs = seen if seen is not None else min([assume_epochs, *caps])
        per_run = (
            epochs * (row["seconds_per_epoch"] + row["seconds_per_eval"] / eval_every) + row["seconds_per_eval"]
        ) / 3600
        rows.append(
            {
                "backbone": backbone,
                "method": method,
                "runs": len(planned),
                "grid_points": sum(r.tuning for r in planned),
                "epochs": epochs,
                "epochs_from": "finished runs" if seen is not None else "assumed",
                "costed_as": costed_as,
                "device": row["device"],
                "hours_per_run": per_run,
                "hours": per_run * len(planned),
            }
        )
    return pd.DataFrame(rows).sort_values(["backbone", "method"], kind="stable").reset_index(drop=True)


def wall_hours(total_hours: float, gpus: int, jobs_per_gpu: int, gpu_share: float) -> float:
    """Hours of wall time on `gpus` cards with `jobs_per_gpu` jobs each (gain capped at 1 / gpu_share)."""
    if gpus < 1 or jobs_per_gpu < 1 or not 0 < gpu_share <= 1:
        raise ValueError("gpus and jobs per GPU must be >= 1 and the GPU share in (0, 1]")
    return total_hours / (gpus * min(jobs_per_gpu, 1.0 / gpu_share))
