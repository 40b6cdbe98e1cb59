"""Hyper-parameter grids selected on the validation split only.

MMRec's `quick_start.py` and the released GUIDER code train every point of a model's grid
and report the point with the best *test* Recall@20 (enoche/MMRec#64), which lets the test
split choose the model. Here a grid point is chosen by its best **valid** Recall@20 (the
trainer's own early-stopping metric, at its best epoch); ties go to the earlier point in
grid order. The test metric of the point test-set selection would have picked is kept
beside it, so the optimism that selection adds (its test Recall@20 minus the chosen
point's) is a number in every tuning record.

Grids: a backbone's is the one recorded in its config class (`Config.grid`, MMRec's model
yaml), a method's the one recorded on its objective class (`grid`, not inherited: GUIDER's
`paper` only); the workflow's `tuning` section can replace either. Plain training (`none`)
tunes the backbone grid; a method with a grid of its own tunes that grid on top of the
backbone point plain training chose (its record lists the inherited settings); a method
without one uses plain training's point. `max_points` caps a grid at a seeded random subset,
kept in grid order.

A record (`results/tuning/<dataset>/<backbone>/<method>.json`) holds the grid, every point
with its settings and valid / test metrics, the chosen point, the test-selected point and
the optimism; `guider train --tuned FILE` trains the chosen point's settings.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guider.atomic import write_json

SELECTION_METRIC = "recall@20"
PLAIN = "none"


def recorded_backbone_grid(backbone: str) -> dict[str, tuple]:
    """The grid recorded in the backbone's config class ({} when it records none)."""
    from guider.models import get_class

    return dict(get_class(backbone).Config.grid)


def recorded_method_grid(method: str) -> dict[str, tuple]:
    """The grid recorded on the method's own objective class (not inherited by its ablations)."""
    from guider.objective import objective_class

    return dict(vars(objective_class(method)).get("grid", {}))


def grid_for(
    backbone: str,
    method: str,
    backbone_grids: Mapping[str, Mapping[str, Sequence]] | None = None,
    method_grids: Mapping[str, Mapping[str, Sequence]] | None = None,
) -> dict[str, tuple]:
    """The grid tuned for (backbone, method): the backbone's for plain training, the method's
    own otherwise ({}: the method is not tuned and uses plain training's point)."""
    if method == PLAIN:
        chosen = (backbone_grids or {}).get(backbone)
        grid = recorded_backbone_grid(backbone) if chosen is None else chosen
    else:
        chosen = (method_grids or {}).get(method)
        grid = recorded_method_grid(method) if chosen is None else chosen
    return {key: tuple(values) for key, values in grid.items()}


def grid_points(grid: Mapping[str, Sequence], max_points: int | None = None, subset_seed: int = 0) -> list[dict]:
    """Every point of the grid (the product in key order, last key fastest), or a seeded
    random subset of `max_points` of them in grid order."""
    for key, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"tuning grid {key}: no values")
    keys = list(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]
    if max_points is not None and len(points) > max_points:
        if max_points < 1:
            raise ValueError(f"tuning.max_points must be >= 1, got {max_points}")
        kept = np.sort(np.random.default_rng(subset_seed).choice(len(points), max_points, replace=False))
        points = [points[i] for i in kept]
    return points


def point_sets(point: Mapping[str, Any]) -> list[str]:
    """A point as `--set key=value` pairs (JSON scalars, so floats round-trip exactly)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def first_best(values: Sequence[float]) -> int:
    """Index of the largest value, the earliest on ties; NaN never wins."""
    finite = [(-v, i) for i, v in enumerate(values) if v == v]
    if not finite:
        raise ValueError("no grid point has a finite selection metric")
    return min(finite)[1]


def read_point_run(run_dir: str | Path, point: Mapping[str, Any]) -> dict[str, Any]:
    """One trained grid point: its valid and test metrics, checked against its config.json
    (a run folder that trained other settings is an error, not a silent mismatch)."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    for key, value in point.items():
        section, name = key.split(".", 1)
        got = (config.get(section) or {}).get(name, "<missing>")
        if not _same(got, value):
            raise ValueError(f"{run_dir}: grid point says {key}={value!r} but the run trained {key}={got!r}")
    return {"valid": metrics["valid"], "test": metrics["test"], "best_epoch": metrics.get("best_epoch")}


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(got, float):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return got == want or (isinstance(want, (list, tuple)) and list(got) == list(want))


def select(
    grid: Mapping[str, Sequence],
    points: list[dict],
    results: list[dict],
    inherited: Mapping[str, Any] | None = None,
    metric: str = SELECTION_METRIC,
    **coordinates: Any,
) -> dict[str, Any]:
    """The tuning record: every point with its metrics, the valid-chosen point, the point
    test-set selection would choose, and the optimism that adds (test metric difference)."""
    if len(points) != len(results):
        raise ValueError(f"{len(points)} grid points but {len(results)} trained runs")
    inherited = dict(inherited or {})
    rows = [
        {"index": i, "point": point, "settings": {**inherited, **point}, **result}
        for i, (point, result) in enumerate(zip(points, results))
    ]
    chosen = rows[first_best([row["valid"][metric] for row in rows])]
    by_test = rows[first_best([row["test"][metric] for row in rows])]
    return {
        **coordinates,
        "metric": metric,
        "grid": {key: list(values) for key, values in grid.items()},
        "inherited": inherited,
        "points": rows,
        "chosen": chosen,
        "test_selected": by_test,
        "optimism": by_test["test"][metric] - chosen["test"][metric],
    }


def inherited_record(plain: Mapping[str, Any], **coordinates: Any) -> dict[str, Any]:
    """The record of a method without a grid of its own: plain training's chosen point."""
    chosen = plain["chosen"]
    return {
        **coordinates,
        "metric": plain["metric"],
        "grid": {},
        "inherited": chosen["settings"],
        "points": [],
        "chosen": {"index": None, "point": {}, "settings": chosen["settings"]},
        "test_selected": None,
        "optimism": None,
    }


def write_record(record: Mapping[str, Any], path: str | Path) -> Path:
    write_json(Path(path), dict(record))
    return Path(path)


def read_record(path: str | Path) -> dict[str, Any]:
    """A tuning record; ValueError naming the file when it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable tuning record ({err})") from err
    if not isinstance(record, dict) or not isinstance((record.get("chosen") or {}).get("settings"), dict):
        raise ValueError(f"{path}: not a tuning record (no chosen.settings)")
    return record


def tuned_sets(path: str | Path) -> list[str]:
    """The chosen point of a tuning record as `--set` pairs (what `guider train --tuned` applies)."""
    return point_sets(read_record(path)["chosen"]["settings"])
