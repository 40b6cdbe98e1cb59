"""Collect finished runs into one tidy table (one row per run) and their training curves.

The workflow stores every run at

    results/runs/<dataset>/<data>/<backbone>/<method>/seed<k>/

where <data> is `base` (the dataset as prepared), `<kind><r>` (a noisy copy made by
`guider data noise --kind <kind> --ratio r`: add0.2, delete0.1, modality0.4) or `natural`
(low-rated interactions labelled as noise: no ratio), and <method> a registered method name
(`guider train --method`). The path gives the study coordinates that the trainer cannot
know (the noise kind and ratio of the data it was handed); metrics.json and
config.json give the rest, and the two are cross-checked so a misplaced run is an error,
not a wrong table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

BASE_DATA = "base"
NO_NOISE = "none"  # noise_kind of the base data
RATIO_KINDS = ("add", "delete", "modality")  # noise kinds with a ratio, in the report's order
NATURAL = "natural"  # the kind without a ratio (noise_ratio NaN)
_NOISE_DATA = re.compile(r"^(" + "|".join(RATIO_KINDS) + r")(\d+(?:\.\d+)?)$")
_SEED_DIR = re.compile(r"^seed(\d+)$")
STUDY_COLUMNS = ("dataset", "data", "noise_kind", "noise_ratio", "backbone", "method", "seed")  # a run's coordinates
RUN_COLUMNS = [
    "dataset",
    "data",
    "noise_kind",
    "noise_ratio",
    "backbone",
    "method",
    "seed",
    "best_epoch",
    "epochs_run",
    "train_seconds",
    "seconds_per_epoch",
    "device",
    "run_dir",
]


@dataclass(frozen=True)
class RunKey:
    """Study coordinates of a run, read from its directory."""

    dataset: str
    data: str
    backbone: str
    method: str
    seed: int

    @property
    def noise_kind(self) -> str:
        return noise_of(self.data)[0]

    @property
    def noise_ratio(self) -> float:
        return noise_of(self.data)[1]


def noise_of(data: str) -> tuple[str, float]:
    """(noise kind, ratio) of a data folder name: 'base' -> ('none', 0.0), 'add0.2' ->
    ('add', 0.2), 'natural' -> ('natural', nan); ValueError otherwise."""
    if data == BASE_DATA:
        return NO_NOISE, 0.0
    if data == NATURAL:
        return NATURAL, float("nan")
    match = _NOISE_DATA.match(data)
    if not match:
        kinds = "|".join(RATIO_KINDS)
        raise ValueError(f"data folder name {data!r} is neither '{BASE_DATA}', '{NATURAL}' nor '<{kinds}><ratio>'")
    return match.group(1), float(match.group(2))


def noise_ratio(data: str) -> float:
    """The ratio of a data folder name (0.0 for 'base', nan for 'natural')."""
    return noise_of(data)[1]


def data_name(ratio: float, kind: str = "add") -> str:
    """Inverse of `noise_of`: 0 -> 'base', (0.2, 'add') -> 'add0.2', kind 'natural' -> 'natural'."""
    if kind == NATURAL:
        return NATURAL
    if kind not in RATIO_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join((*RATIO_KINDS, NATURAL))}")
    return BASE_DATA if ratio == 0 else f"{kind}{ratio:g}"


def parse_run_path(metrics_path: str | Path) -> RunKey:
    """RunKey of `.../<dataset>/<data>/<backbone>/<method>/seed<k>/metrics.json`."""
    parts = Path(metrics_path).parts
    if len(parts) < 6:
        raise ValueError(f"{metrics_path}: expected .../<dataset>/<data>/<backbone>/<method>/seed<k>/metrics.json")
    dataset, data, backbone, method, seed_dir = parts[-6:-1]
    seed = _SEED_DIR.match(seed_dir)
    if not seed:
        raise ValueError(f"{metrics_path}: run folder {seed_dir!r} is not 'seed<k>'")
    noise_of(data)  # validates the data folder name
    return RunKey(dataset, data, backbone, method, int(seed.group(1)))


def read_run(metrics_path: str | Path) -> dict:
    """One runs.csv row: study coordinates, training facts, valid/test means, detection quality."""
    metrics_path = Path(metrics_path)
    key = parse_run_path(metrics_path)
    metrics = _read_json(metrics_path)
    config = _read_json(metrics_path.with_name("config.json")) if metrics_path.with_name("config.json").exists() else {}
    method = _method_of(metrics, config, metrics_path)
    _check_consistent(key, metrics, method, metrics_path)
    row = {
        "dataset": key.dataset,
        "data": key.data,
        "noise_kind": key.noise_kind,
        "noise_ratio": key.noise_ratio,
        "backbone": key.backbone,
        "method": key.method,
        "seed": key.seed,
        **{k: metrics.get(k) for k in ("best_epoch", "epochs_run", "train_seconds", "seconds_per_epoch", "device")},
        "run_dir": str(metrics_path.parent),
    }
    for split in ("valid", "test"):
        row.update({f"{split}.{name}": float(value) for name, value in metrics[split].items()})
    row.update({f"detect.{name}": value for name, value in _detection(metrics, metrics_path).items()})
    return row


def collect_runs(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """runs.csv as a DataFrame, sorted by study coordinates; an empty list is an error."""
    if not metrics_paths:
        raise ValueError("no runs to collect: the list of metrics.json files is empty")
    rows = [read_run(path) for path in metrics_paths]
    table = pd.DataFrame(rows)
    duplicated = table.duplicated(["dataset", "data", "backbone", "method", "seed"])
    if duplicated.any():
        raise ValueError(f"the same run is listed twice: {table.loc[duplicated, 'run_dir'].tolist()}")
    metric_cols = sorted(c for c in table.columns if c not in RUN_COLUMNS)
    order = ["dataset", "noise_kind", "noise_ratio", "backbone", "method", "seed"]
    return table[RUN_COLUMNS + metric_cols].sort_values(order, kind="stable").reset_index(drop=True)


def collect_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows of every run's log.csv, keyed by the run's study coordinates."""
    frames = []
    for run in runs.itertuples(index=False):
        path = Path(run.run_dir) / "log.csv"
        if not path.exists():
            raise ValueError(f"{path}: training log missing (every run writes log.csv)")
        log = pd.read_csv(path)
        if "epoch" not in log.columns:
            raise ValueError(f"{path}: no 'epoch' column")
        keys = {c: getattr(run, c) for c in STUDY_COLUMNS}
        frames.append(log.assign(**keys))
    curves = pd.concat(frames, ignore_index=True)
    front = [*STUDY_COLUMNS, "epoch"]
    return curves[front + [c for c in curves.columns if c not in front]]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file missing") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _method_of(metrics: dict, config: dict, path: Path) -> str:
    """The run's method: config.json is authoritative, metrics.json the fallback. Runs written
    before 0.2 recorded a (variant, denoise) pair instead; it names the method too."""
    for key in ("valid", "test"):
        if not isinstance(metrics.get(key), dict) or not metrics[key]:
            raise ValueError(f"{path}: '{key}' must map metric names to values")
    method = config.get("method", metrics.get("method"))
    if method is not None:
        return method
    variant = config.get("variant", metrics.get("variant"))
    denoise = config.get("denoise", metrics.get("denoise_method", metrics.get("denoise", "none")))
    if variant is None:
        raise ValueError(f"{path}: no 'method' in metrics.json or config.json")
    return denoise if isinstance(denoise, str) and denoise != "none" else variant


def _check_consistent(key: RunKey, metrics: dict, method: str, path: Path) -> None:
    found = {"backbone": metrics.get("backbone"), "seed": metrics.get("seed"), "method": method}
    expected = {"backbone": key.backbone, "seed": key.seed, "method": key.method}
    wrong = {k: (found[k], expected[k]) for k in expected if found[k] != expected[k]}
    if wrong:
        detail = ", ".join(f"{k}={got!r} but the folder says {want!r}" for k, (got, want) in wrong.items())
        raise ValueError(f"{path}: run does not match its folder: {detail}")


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
