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
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guider.runs.atomic import write_json

log = logging.getLogger(__name__)

SELECTION_METRIC = "recall@20"
PLAIN = "none"


def recorded_backbone_grid(backbone: str) -> dict[str, tuple]:
    """The grid recorded in the backbone's config class ({} when it records none)."""
    from guider.models import get_class

    return dict(get_class(backbone).Config.grid)


def recorded_method_grid(method: str) -> dict[str, tuple]:
    """The grid recorded on the method's own objective class (not inherited by its ablations)."""
    from guider.methods import method_class

    return dict(vars(method_class(method)).get("grid", {}))


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


MAX_FULL_GRID = 100_000  # a grid with more points needs max_points (a seeded subset)
_MAX_DRAWABLE = 2**62  # the largest grid a subset can be drawn from


def check_grid(grid: Any, where: str = "tuning grid") -> dict[str, tuple]:
    """`grid` as {section.key: tuple of values}; ValueError naming the key when a key is not
    `section.key` or its values are not a non-empty list of numbers, strings or booleans."""
    if not isinstance(grid, Mapping):
        raise ValueError(f"{where} must map section.key to a list of values, got {grid!r}")
    checked = {}
    for key, values in grid.items():
        if not isinstance(key, str) or key.count(".") < 1 or not all(part.isidentifier() for part in key.split(".")):
            raise ValueError(f"{where}: key {key!r} is not section.key (e.g. model.reg_weight)")
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"{where} {key}: the values must be a list (e.g. [0.01, 0.001]), got {values!r}")
        if len(values) == 0:
            raise ValueError(f"tuning grid {key}: no values")
        for value in values:
            if not isinstance(value, (int, float, str, bool)) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise ValueError(f"{where} {key}: {value!r} is not a finite number, a string or a boolean")
        checked[key] = tuple(values)
    return checked


def grid_size(grid: Mapping[str, Sequence]) -> int:
    return math.prod(len(values) for values in grid.values())


def grid_points(grid: Mapping[str, Sequence], max_points: int | None = None, subset_seed: int = 0) -> list[dict]:
    """Every point of the grid (the product in key order, last key fastest), or a seeded
    random subset of `max_points` of them in grid order. The subset is drawn as indices into
    the product, decoded one by one, so a huge grid is never built."""
    grid = check_grid(grid)
    if max_points is not None and max_points < 1:
        raise ValueError(f"tuning.max_points must be >= 1, got {max_points}")
    size = grid_size(grid)
    if max_points is None or size <= max_points:
        if size > MAX_FULL_GRID:
            raise ValueError(
                f"the tuning grid has {size:,} points (more than {MAX_FULL_GRID:,}); set max_points to train "
                "a seeded random subset"
            )
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    if size > _MAX_DRAWABLE:
        raise ValueError(f"the tuning grid has {size:.3g} points; too many to draw a subset from: make it smaller")
    kept = np.sort(np.random.default_rng(subset_seed).choice(size, max_points, replace=False))
    return [grid_point(grid, int(index)) for index in kept]


def grid_point(grid: Mapping[str, Sequence], index: int) -> dict:
    """The point at `index` of the product of the grid's values (last key fastest)."""
    point = {}
    for key in reversed(list(grid)):
        index, position = divmod(index, len(grid[key]))
        point[key] = grid[key][position]
    return {key: point[key] for key in grid}


def check_point_keys(backbone: str, method: str, points: Sequence[Mapping[str, Any]]) -> None:
    """Every key of the grid is a setting of (backbone, method) and its first and last values
    are valid there; ValueError (guider.config.sections.ConfigError) naming the key otherwise."""
    from guider.config import resolve_run_config

    for point in {0: points[0], len(points) - 1: points[-1]}.values() if points else ():
        resolve_run_config(backbone, method=method, sets=point_sets(point))


def point_sets(point: Mapping[str, Any]) -> list[str]:
    """A point as `--set key=value` pairs (JSON scalars, so floats round-trip exactly)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def first_best(values: Sequence[float]) -> int:
    """Index of the largest value, the earliest on ties; NaN never wins (and is logged)."""
    finite = [(-v, i) for i, v in enumerate(values) if v == v]
    if not finite:
        raise ValueError("no grid point has a finite selection metric")
    skipped = [i for i, v in enumerate(values) if v != v]
    if skipped:
        log.warning("grid points %s have a NaN selection metric and cannot be chosen", skipped)
    return min(finite)[1]


def read_point_run(run_dir: str | Path, point: Mapping[str, Any]) -> dict[str, Any]:
    """One trained grid point: its valid and test metrics, checked against its config.json
    (a run folder that trained other settings is an error, not a silent mismatch)."""
    run_dir = Path(run_dir)
    metrics = _read_json_object(run_dir / "metrics.json")
    config = _read_json_object(run_dir / "config.json")
    for key, value in point.items():
        section, name = key.split(".", 1)
        got = (config.get(section) or {}).get(name, "<missing>")
        if not _same(got, value):
            raise ValueError(f"{run_dir}: grid point says {key}={value!r} but the run trained {key}={got!r}")
    splits = {split: _metric_values(metrics.get(split), run_dir / "metrics.json", split) for split in ("valid", "test")}
    return {**splits, "best_epoch": metrics.get("best_epoch")}


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (the grid point has not finished training)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _metric_values(values: Any, path: Path, split: str) -> dict[str, float]:
    """A split's metrics, each a number in [0, 1] or NaN; ValueError naming the file and key."""
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path}: no '{split}' metrics (a finished run maps metric names to values)")
    checked = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: {split}.{name} is {value!r}, not a number")
        if not (math.isnan(value) or 0.0 <= value <= 1.0):
            raise ValueError(f"{path}: {split}.{name} is {value!r}; ranking metrics lie in [0, 1]")
        checked[name] = float(value)
    return checked


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
    for index, result in enumerate(results):
        missing = [split for split in ("valid", "test") if metric not in result[split]]
        if missing:
            raise ValueError(f"grid point {index}: no {metric!r} among its {' and '.join(missing)} metrics")
    inherited = dict(inherited or {})
    rows = [
        {"index": i, "point": point, "settings": {**inherited, **point}, **result}
        for i, (point, result) in enumerate(zip(points, results))
    ]
    chosen = rows[first_best([row["valid"][metric] for row in rows])]
    by_test = rows[first_best([row["test"][metric] for row in rows])]
    return {
        **coordinates,
        **_labels(coordinates),
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
        **_labels(coordinates),
        "metric": plain["metric"],
        "grid": {},
        "inherited": chosen["settings"],
        "points": [],
        "chosen": {"index": None, "point": {}, "settings": chosen["settings"]},
        "test_selected": None,
        "optimism": None,
    }


def _labels(coordinates: Mapping[str, Any]) -> dict[str, Any]:
    """The display names the report prints for the record's backbone and method (guider.engine.trainer.run_labels)."""
    from guider.config.sections import ConfigError
    from guider.engine.trainer import run_labels

    try:
        return {"labels": run_labels(coordinates["backbone"], coordinates["method"])}
    except (KeyError, ConfigError, ValueError):  # names not registered here: the report prints them as they are
        return {}


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


def tuned_sets(path: str | Path, backbone: str | None = None, method: str | None = None) -> list[str]:
    """The chosen point of a tuning record as `--set` pairs (what `guider train --tuned` applies).

    With `backbone` / `method`, the record must be one written for that backbone and for that
    method or plain training (whose point a method without a grid of its own trains)."""
    record = read_record(path)
    if backbone is not None and record.get("backbone") not in (None, backbone):
        raise ValueError(f"{path}: a tuning record of backbone {record.get('backbone')!r}, not {backbone!r}")
    if method is not None and record.get("method") not in (None, method, PLAIN):
        raise ValueError(f"{path}: a tuning record of method {record.get('method')!r}, not {method!r} (or {PLAIN})")
    return point_sets(record["chosen"]["settings"])
