"""Collect finished runs into one tidy table (one row per run) and their training curves.

Every run carries its own coordinates: `guider train` writes into metrics.json the study
coordinates of the data it trained on (`study`: the dataset's name, its data level, the noise
kind and ratio, read from the data folder's dataset.json) and how tables name and order it
(`labels`: display names, the method's role, registration order). `report collect` reads
those; the run's folder is only a cross-check: when it follows the workflow's layout

    results/runs/<dataset>/<data>/<backbone>/<method>/seed<k>/

a disagreement is an error naming the run. Each run's recorded data fingerprint is compared
with its data folder (config.json `data`) as it is now, so a dataset replaced after training
is refused instead of reported. The report never imports model or method code.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

import pandas as pd

from guider.data.noise import BASE_LEVEL, NO_NOISE, noise_kinds

log = logging.getLogger(__name__)
BASE_DATA = BASE_LEVEL
_SEED_DIR = re.compile(r"^seed(\d+)$")
STUDY_COLUMNS = ("dataset", "data", "noise_kind", "noise_ratio", "backbone", "method", "seed")  # a run's coordinates
LABEL_COLUMNS = ("backbone_name", "method_name", "method_role", "backbone_rank", "method_rank")
RUN_COLUMNS = [
    *STUDY_COLUMNS,
    *LABEL_COLUMNS,
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "seconds_per_epoch",
    "device",
    "run_dir",
]


def read_run(metrics_path: str | Path) -> dict:
    """One runs.csv row: study coordinates, labels, training facts, valid/test means, detection quality."""
    metrics_path = Path(metrics_path)
    metrics = _read_json(metrics_path)
    config_path = metrics_path.with_name("config.json")
    config = _read_json(config_path) if config_path.exists() else {}
    _check_metrics(metrics, metrics_path)
    row = {**_coordinates(metrics, config, metrics_path), **_labels(metrics, metrics_path)}
    _check_folder(row, metrics_path)
    if not _check_fingerprint(config, metrics, metrics_path):
        row["_fingerprint_unchecked"] = True
    row.update({k: metrics.get(k) for k in ("best_epoch", "epochs_run", "train_seconds", "seconds_per_epoch")})
    row.update(device=metrics.get("device"), run_dir=str(metrics_path.parent))
    for split in ("valid", "test"):
        row.update({f"{split}.{name}": float(value) for name, value in metrics[split].items()})
    row.update({f"detect.{name}": value for name, value in _detection(metrics, metrics_path).items()})
    teacher = metrics.get("teacher")  # a GUIDER run's teacher, evaluated like the student
    if isinstance(teacher, dict):
        row.update({f"teacher.{name}": value for name, value in _flat_numbers(teacher).items()})
    return row


def collect_runs(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """runs.csv as a DataFrame, sorted by study coordinates; an empty list is an error."""
    if not metrics_paths:
        raise ValueError("no runs to collect: the list of metrics.json files is empty")
    rows = [read_run(path) for path in metrics_paths]
    unchecked = sum(row.pop("_fingerprint_unchecked", False) for row in rows)
    if unchecked:
        log.warning("%d run(s) record no data folder or fingerprint; their data was not checked", unchecked)
    table = pd.DataFrame(rows)
    duplicated = table.duplicated(["dataset", "data", "backbone", "method", "seed"])
    if duplicated.any():
        raise ValueError(f"the same run is listed twice: {table.loc[duplicated, 'run_dir'].tolist()}")
    metric_cols = sorted(c for c in table.columns if c not in RUN_COLUMNS)
    table["_kind_order"] = table["noise_kind"].map(kind_rank)
    order = ["dataset", "_kind_order", "noise_ratio", "backbone_rank", "backbone", "method_rank", "method", "seed"]
    table = table.sort_values(order, kind="stable").reset_index(drop=True)
    return table[RUN_COLUMNS + metric_cols]


def kind_rank(kind: str) -> int:
    """Order of noise kinds: none first, then the registered kinds, then any other."""
    known = [NO_NOISE, *noise_kinds()]
    return known.index(kind) if kind in known else len(known)


def collect_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows of every run's log.csv, keyed by the run's study coordinates."""
    frames = []
    for run in runs.itertuples(index=False):
        path = Path(run.run_dir) / "log.csv"
        if not path.exists():
            raise ValueError(f"{path}: training log missing (every run writes log.csv)")
        log_rows = pd.read_csv(path)
        if "epoch" not in log_rows.columns:
            raise ValueError(f"{path}: no 'epoch' column")
        keys = {c: getattr(run, c) for c in (*STUDY_COLUMNS, *LABEL_COLUMNS)}
        frames.append(log_rows.assign(**keys))
    curves = pd.concat(frames, ignore_index=True)
    front = [*STUDY_COLUMNS, *LABEL_COLUMNS, "epoch"]
    return curves[front + [c for c in curves.columns if c not in front]]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _check_metrics(metrics: dict, path: Path) -> None:
    for key in ("valid", "test"):
        values = metrics.get(key)
        if not isinstance(values, dict) or not values:
            raise ValueError(f"{path}: '{key}' must map metric names to values")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{path}: {key}.{name} is {value!r}, not a number")


def _coordinates(metrics: dict, config: dict, path: Path) -> dict:
    """The run's study coordinates from metrics.json (`study`, with backbone, method, seed); the
    method config.json records wins (the resolved config the run trained)."""
    study = metrics.get("study")
    if not isinstance(study, dict) or not {"dataset", "data", "noise_kind"} <= set(study):
        raise ValueError(
            f"{path}: no study coordinates (a run written before guider 0.4); run the same `guider train` "
            "command with --resume to rewrite its files"
        )
    ratio = study.get("noise_ratio")
    coordinates = {
        "dataset": study["dataset"],
        "data": study["data"],
        "noise_kind": study["noise_kind"],
        "noise_ratio": float("nan") if ratio is None else float(ratio),
        "backbone": metrics.get("backbone"),
        "method": config.get("method", metrics.get("method")),
        "seed": metrics.get("seed"),
    }
    missing = [k for k, v in coordinates.items() if v is None]
    if missing or not isinstance(coordinates["seed"], int):
        raise ValueError(f"{path}: metrics.json lacks {missing or ['an integer seed']}")
    return coordinates


def _labels(metrics: dict, path: Path) -> dict:
    labels = metrics.get("labels")
    if not isinstance(labels, dict):
        raise ValueError(f"{path}: no labels (display names); run the same `guider train` command with --resume")
    return {
        "backbone_name": str(labels.get("backbone") or metrics["backbone"]),
        "method_name": str(labels.get("method") or metrics["method"]),
        "method_role": str(labels.get("method_role") or "other"),
        "backbone_rank": int(labels.get("backbone_rank", 10**6)),
        "method_rank": int(labels.get("method_rank", 10**6)),
    }


def _check_folder(row: dict, path: Path) -> None:
    """A run in the workflow's layout must sit in the folder of its own coordinates."""
    parts = path.parts
    if len(parts) < 6 or not _SEED_DIR.match(parts[-2]):
        return  # a run folder outside the layout: nothing to cross-check
    dataset, data, backbone, method, seed_dir = parts[-6:-1]
    folder = {"dataset": dataset, "data": data, "backbone": backbone, "method": method}
    folder["seed"] = int(_SEED_DIR.match(seed_dir).group(1))
    wrong = {k: (row[k], v) for k, v in folder.items() if row[k] != v}
    if wrong:
        detail = ", ".join(f"{k}={got!r} but the folder says {want!r}" for k, (got, want) in wrong.items())
        raise ValueError(f"{path}: run does not match its folder: {detail}")


def _check_fingerprint(config: dict, metrics: dict, path: Path) -> bool:
    """The data folder the run trained on must still hold the data it recorded; False when the
    run records no data folder or fingerprint (nothing to check)."""
    folder, recorded = config.get("data"), metrics.get("data_fingerprint", config.get("data_fingerprint"))
    if not folder or not recorded:
        return False
    current = _fingerprint_of(str(Path(folder).resolve()))
    if current != recorded:
        raise ValueError(
            f"{path}: trained on data with fingerprint {recorded}, but its data folder {folder} now holds "
            f"{current}: the dataset changed after training; retrain the run (guider train --resume starts afresh)"
        )
    return True


@functools.cache
def _fingerprint_of(folder: str) -> str:
    from guider.data import load_dataset
    from guider.data.format.fingerprint import dataset_fingerprint

    if not Path(folder).is_dir():
        raise ValueError(f"{folder}: the data folder a run trained on is gone; its fingerprint cannot be checked")
    return dataset_fingerprint(load_dataset(folder))


def _detection(metrics: dict, path: Path) -> dict[str, float]:
    """Flat numeric scores of AMSC's false set against injected noise (denoise.json), if any."""
    found = path.with_name("denoise.json")
    source = _read_json(found) if found.exists() else metrics.get("detection")
    return _flat_numbers(source) if isinstance(source, dict) else {}


def _flat_numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_numbers(value, f"{prefix}{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{name}"] = float(value)
    return flat
