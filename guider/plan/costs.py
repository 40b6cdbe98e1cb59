"""The study's cost before anyone runs it (`guider plan`).

Trainings come from the study itself (`guider.study.Study.runs()`: the studies' runs and the
tuning grid points), never from a Snakemake listing. Each is costed from a per-backbone cost
table measured by `benchmarks/gpu_costs.py` (a GPU) or `benchmarks/bench_guider.py
--costs-out` (a CPU): seconds per training epoch for plain training and for GUIDER, and
seconds per validation evaluation, on the device and the dataset size the table records. A
run costs

    epochs x (s/epoch + s/eval / eval_every) + s/eval (the test evaluation)

with s/epoch scaled by the run's dataset train rows / the table's train rows, and s/eval by
(users x items) / (the table's users x items): an epoch is one pass over the train rows, an
evaluation ranks every item for every user. A table without size columns is taken as
measured at the Baby size (the synthetic baby preset), and the output says so. Dataset
sizes come from the prepared folder (results/data/<d>/base/dataset.json), else the dataset
registry's expected statistics, else the synthetic preset, else the MMRec .inter file.

`epochs` is the mean `epochs_run` of this study's finished runs of the same backbone and
method (their run folder holds metrics.json; runs of other configs never count), else
`--assume-epochs` (capped by the run config's train.epochs): the trainer stops early, and
MMRec-style runs end after about 50-150 epochs of the 1000 allowed. A method without its own
row is costed as GUIDER (`paper`) when it distils from a teacher (its class has a `teacher`
section: GUIDER's ablations, as_released), else as plain training (`none`). Finished runs with
a Snakemake benchmark file (results/benchmarks/...: column `s`, wall seconds) give the hours
measured and the ratio measured / projected per backbone and method.

Labelling is honest: a table whose devices start with `cpu` gives CPU hours of one job on
that CPU and no GPU estimate at all; one whose devices start with `cuda` gives GPU hours of
one job on its card. Wall time (GPU tables only) on N GPUs with K jobs per GPU is
GPU-hours / (N x speedup(K)), speedup(K) = aggregate steps/s of K concurrent processes / that
of one, from a measured packing table (benchmarks/gpu_costs.py writes packing_gpu_<card>.csv),
averaged over its backbones; without one only K = 1 is given.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COST_COLUMNS = ("backbone", "method", "device", "seconds_per_epoch", "seconds_per_eval")
SIZE_COLUMNS = ("users", "items", "train_rows")
OPTIONAL_COLUMNS = ("dataset", *SIZE_COLUMNS, "peak_memory_gib", "card", "steps_timed")
PACKING_COLUMNS = ("backbone", "jobs", "steps_per_second")
TRAIN_SHARE = 0.8  # train rows of a dataset whose split is not known yet (protocol: 8:1:1 per user)


@dataclass(frozen=True)
class Size:
    """A dataset's size, and where it comes from."""

    users: int
    items: int
    train_rows: int
    source: str

    def label(self) -> str:
        return f"{self.users:,} users x {self.items:,} items, {self.train_rows:,} train rows"


BABY = Size(19_445, 7_050, 121_103, "the synthetic baby preset")


@dataclass(frozen=True)
class Finished:
    """A finished run of the study: its epochs and, with a benchmark file, its wall seconds."""

    epochs: float | None
    seconds: float | None


# --- the cost table --------------------------------------------------------------------
def read_costs(path: str | Path) -> pd.DataFrame:
    """The cost table; ValueError naming the file, and the row and column of a bad value."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV cost table ({err})") from None
    missing = [c for c in COST_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a cost table (missing columns {missing}; benchmarks/gpu_costs.py writes one)")
    if table.empty:
        raise ValueError(f"{path}: the cost table has no rows")
    for column in ("seconds_per_epoch", "seconds_per_eval"):
        table[column] = _numbers(table, column, path, required=True, positive=False)
    sizes = [c for c in SIZE_COLUMNS if c in table.columns]
    if sizes and len(sizes) != len(SIZE_COLUMNS):
        raise ValueError(f"{path}: size columns come together ({', '.join(SIZE_COLUMNS)}); found only {sizes}")
    for column in sizes:
        table[column] = _numbers(table, column, path, required=True, positive=True)
    for column in ("peak_memory_gib", "steps_timed"):
        if column in table.columns:
            table[column] = _numbers(table, column, path, required=False, positive=column == "steps_timed")
    table_kind(table, path)
    return table


def _numbers(table: pd.DataFrame, column: str, path, required: bool, positive: bool) -> pd.Series:
    """`column` as finite numbers (> 0 or >= 0); empty cells allowed unless `required`."""
    values = pd.to_numeric(table[column], errors="coerce")
    empty = table[column].isna()
    finite = values.between(0, float("inf"), inclusive="neither" if positive else "left")
    bad = ~finite & (~empty | required)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        value = table[column].iloc[row]
        shown = repr(value) if isinstance(value, str) else str(value)
        rule = "seconds >= 0" if column.startswith("seconds_") else f"numbers {'> 0' if positive else '>= 0'}"
        noun = "costs" if column.startswith("seconds_") else f"{column} values"
        raise ValueError(f"{path}: line {row + 2}: {column} is {shown}; {noun} are finite {rule}")
    return values


def table_kind(costs: pd.DataFrame, path="the cost table") -> str:
    """'gpu' when every device starts with 'cuda', 'cpu' when every one starts with 'cpu'."""
    devices = costs["device"].astype(str).str.strip().str.lower()
    gpu, cpu = devices.str.startswith("cuda"), devices.str.startswith("cpu")
    neither = ~(gpu | cpu)
    if neither.any():
        row = int(neither.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}: line {row + 2}: device {costs['device'].iloc[row]!r} is neither cuda... nor cpu...")
    if gpu.any() and cpu.any():
        raise ValueError(
            f"{path}: mixes CPU rows (line {int(cpu.to_numpy().nonzero()[0][0]) + 2}) and GPU rows "
            f"(line {int(gpu.to_numpy().nonzero()[0][0]) + 2}); one table per device"
        )
    return "gpu" if gpu.all() else "cpu"


def table_device(costs: pd.DataFrame) -> str:
    """What one job ran on: a GPU table's card(s) (`card` column, else its devices), a CPU
    table's device string(s) (e.g. 'cpu (2 threads)')."""
    has_card = "card" in costs.columns and costs["card"].notna().any()
    column = "card" if has_card and table_kind(costs) == "gpu" else "device"
    return ", ".join(sorted(set(costs[column].dropna().astype(str))))


def reference_size(row: pd.Series) -> Size:
    """The dataset size a cost row was measured at (the Baby size when the table has none)."""
    if "train_rows" not in row.index:
        return BABY
    dataset = row.get("dataset")
    label = "the cost table's dataset" if dataset is None or pd.isna(dataset) else str(dataset)
    return Size(int(row["users"]), int(row["items"]), int(row["train_rows"]), label)


def reference_sizes(costs: pd.DataFrame) -> list[Size]:
    """The distinct sizes the table was measured at."""
    return list(dict.fromkeys(reference_size(row) for _, row in costs.iterrows()))


def cost_row(costs: pd.DataFrame, backbone: str, method: str) -> tuple[pd.Series, str]:
    """(the row costing this run, which method's row it is)."""
    rows = costs[costs["backbone"] == backbone]
    if rows.empty:
        raise ValueError(
            f"the cost table has no row for backbone {backbone!r}; measure it with benchmarks/gpu_costs.py"
        )
    for candidate in (method, _family(method), "none"):
        hit = rows[rows["method"] == candidate]
        if not hit.empty:
            return hit.iloc[0], candidate
    raise ValueError(f"the cost table has no 'none' row for backbone {backbone!r}")


def _family(method: str) -> str:
    """'paper' for a method that distils from a teacher (GUIDER, its ablations, as_released:
    it has a `teacher` section), else 'none'."""
    from guider.methods import method_class

    return "paper" if "teacher" in method_class(method).sections else "none"


# --- dataset sizes ---------------------------------------------------------------------
def dataset_size(study, name: str, root: str | Path = ".") -> Size:
    """A study dataset's size: prepared folder, else registry, else synthetic preset, else .inter."""
    from guider.study import DATA_ROOT, dataset_registry

    spec = study.datasets[name]
    prepared = Path(root, DATA_ROOT, name, "base", "dataset.json")
    if prepared.is_file():
        return _prepared_size(prepared)
    if spec["source"] == "download" and "expected" in dataset_registry().get(name, {}):
        expected = dataset_registry()[name]["expected"]
        return _from_interactions(expected["users"], expected["items"], expected["interactions"], "registry expected")
    if spec["source"] == "synthetic":
        return _synthetic_size(spec["synthetic"])
    if spec["source"] == "mmrec":
        folder = Path(spec["path"])
        return _mmrec_size(folder if folder.is_absolute() else Path(root, folder))
    raise ValueError(f"config datasets.{name}: no size known (no prepared folder, registry entry or source files)")


def _from_interactions(users: int, items: int, interactions: int, source: str) -> Size:
    return Size(int(users), int(items), int(round(TRAIN_SHARE * interactions)), source)


def _prepared_size(path: Path) -> Size:
    """From dataset.json's statistics: users, items and train rows (else 0.8 x interactions)."""
    try:
        stats = json.loads(path.read_text())["statistics"]
        users, items = int(stats["users"]), int(stats["items"])
        train = int(stats["train"]) if stats.get("train") else int(round(TRAIN_SHARE * int(stats["interactions"])))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: no usable statistics (users, items, train or interactions): {err}") from None
    return _checked(Size(users, items, train, f"prepared: {path}"))


def _synthetic_size(spec: dict) -> Size:
    """The preset's size, or the configured users/items at the preset's density."""
    from guider.data.synthetic import PRESETS

    preset = PRESETS[spec["preset"]]
    users = spec.get("users") or preset["users"]
    items = spec.get("items") or preset["items"]
    interactions = preset["interactions"] / preset["users"] * users
    return _from_interactions(users, items, interactions, f"synthetic preset {spec['preset']}")


def _mmrec_size(folder: Path) -> Size:
    """Users, items and train rows (x_label 0; else 0.8 x rows) of the folder's .inter file."""
    files = sorted(folder.glob("*.inter"))
    if len(files) != 1:
        raise ValueError(f"{folder}: needs exactly one <name>.inter file to size the dataset")
    try:
        inter = pd.read_csv(files[0], sep="\t")
        users, items = inter["userID"].nunique(), inter["itemID"].nunique()
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
        raise ValueError(f"{files[0]}: cannot count its rows ({err})") from None
    train = int((inter["x_label"] == 0).sum()) if "x_label" in inter else int(round(TRAIN_SHARE * len(inter)))
    return _checked(Size(int(users), int(items), train, f"rows of {files[0]}"))


def _checked(size: Size) -> Size:
    if min(size.users, size.items, size.train_rows) <= 0:
        raise ValueError(f"{size.source}: a dataset of {size.label()} cannot be costed")
    return size


def scale_factors(size: Size, reference: Size) -> tuple[float, float]:
    """(s/epoch factor, s/eval factor) of a dataset against the size the table was measured at."""
    return size.train_rows / reference.train_rows, (size.users * size.items) / (reference.users * reference.items)


# --- finished runs ---------------------------------------------------------------------
def benchmark_file(run) -> str:
    """The Snakemake benchmark file the workflow writes for a training."""
    if run.is_tuning:
        return f"results/benchmarks/tune/{run.dataset}/{run.backbone}/{run.method}/point{run.point}.tsv"
    return f"results/benchmarks/train/{run.dataset}/{run.data}/{run.backbone}/{run.method}/seed{run.seed}.tsv"


def finished_runs(runs, root: str | Path = ".") -> dict:
    """{run: Finished} of the study's runs whose folder holds metrics.json."""
    done = {}
    for run in runs:
        metrics = Path(root, run.folder, "metrics.json")
        if metrics.is_file():
            done[run] = Finished(_epochs_run(metrics), read_benchmark(Path(root, benchmark_file(run))))
    return done


def _epochs_run(path: Path) -> float | None:
    try:
        epochs = float(json.loads(path.read_text())["epochs_run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epochs if math.isfinite(epochs) and epochs >= 0 else None


def read_benchmark(path: Path) -> float | None:
    """Mean wall seconds (column `s`) of a Snakemake benchmark TSV; None when there is none."""
    if not path.is_file():
        return None
    try:
        seconds = pd.to_numeric(pd.read_csv(path, sep="\t")["s"], errors="coerce")
    except (OSError, ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a Snakemake benchmark file ({err}); delete it") from None
    if seconds.empty or not seconds.between(0, float("inf"), inclusive="left").all():
        raise ValueError(f"{path}: column s must hold finite seconds >= 0; delete it")
    return float(seconds.mean())


def epochs_seen(done: dict) -> dict[tuple[str, str], float]:
    """Mean epochs_run of finished runs, by (backbone, method)."""
    found: dict[tuple[str, str], list[float]] = {}
    for run, info in done.items():
        if info.epochs is not None:
            found.setdefault((run.backbone, run.method), []).append(info.epochs)
    return {key: sum(v) / len(v) for key, v in found.items()}


# --- the projection --------------------------------------------------------------------
def run_seconds(row: pd.Series, size: Size, epochs: float, eval_every: int = 1) -> float:
    """Seconds of one run: epochs x (s/epoch + s/eval / eval_every) + s/eval, scaled to `size`."""
    epoch_factor, eval_factor = scale_factors(size, reference_size(row))
    per_epoch, per_eval = row["seconds_per_epoch"] * epoch_factor, row["seconds_per_eval"] * eval_factor
    return epochs * (per_epoch + per_eval / eval_every) + per_eval


def run_settings(study, backbone: str, method: str) -> tuple[int, int]:
    """(train.epochs, train.eval_every) of the study's runs of (backbone, method)."""
    from guider.config import resolve_run_config
    from guider.study import override_pairs

    train = study.train
    sets = override_pairs(train, backbone, method)
    config = resolve_run_config(backbone, method=method, sets=sets, epochs=train["epochs"], patience=train["patience"])
    return config.train.epochs, config.train.eval_every


def project(study, runs, costs: pd.DataFrame, sizes: dict[str, Size], done: dict, assume_epochs: int) -> pd.DataFrame:
    """Per (backbone, method): runs, grid points, epochs (and whence), hours per run, hours, and
    measured / projected seconds of its finished runs with a benchmark file."""
    if assume_epochs < 1:
        raise ValueError(f"--assume-epochs must be >= 1, got {assume_epochs}")
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        groups.setdefault((run.backbone, run.method), []).append(run)
    seen, measured = epochs_seen(done), calibration(study, costs, sizes, done)
    rows = [_group_row(study, key, planned, costs, sizes, seen, assume_epochs) for key, planned in groups.items()]
    columns = ["backbone", "method", "runs", "grid_points", "epochs", "epochs_from", "costed_as", "hours_per_run"]
    table = pd.DataFrame(rows, columns=[*columns, "hours"])
    table["measured_ratio"] = [_ratio(*measured.get(key, (0, 0.0, 0.0))) for key in groups]
    return table.sort_values(["backbone", "method"], kind="stable").reset_index(drop=True)


def _group_row(study, key, planned, costs, sizes, seen, assume_epochs) -> dict:
    """One (backbone, method) line of the projection."""
    from guider.models import get_class

    backbone, method = key
    points = sum(r.is_tuning for r in planned)
    base = {"backbone": backbone, "method": method, "runs": len(planned) - points, "grid_points": points}
    if not get_class(backbone).trainable:
        return {
            **base,
            "epochs": 0.0,
            "epochs_from": "not trained",
            "costed_as": "-",
            "hours_per_run": 0.0,
            "hours": 0.0,
        }
    row, costed_as = cost_row(costs, backbone, method)
    max_epochs, eval_every = run_settings(study, backbone, method)
    epochs = seen.get(key, min(assume_epochs, max_epochs))
    seconds = [run_seconds(row, sizes[r.dataset], epochs, eval_every) for r in planned]
    _check_finite(sum(seconds), f"{backbone}/{method} (cost row {backbone}/{costed_as})")
    return {
        **base,
        "epochs": float(epochs),
        "epochs_from": "finished runs" if key in seen else "assumed",
        "costed_as": costed_as,
        "hours_per_run": sum(seconds) / len(seconds) / 3600,
        "hours": sum(seconds) / 3600,
    }


def calibration(study, costs: pd.DataFrame, sizes: dict[str, Size], done: dict) -> dict:
    """{(backbone, method): (runs, measured seconds, projected seconds)} over the finished runs
    with a benchmark file, each projected at its own epochs_run."""
    from guider.models import get_class

    found: dict[tuple[str, str], tuple[int, float, float]] = {}
    settings: dict[tuple[str, str], int] = {}
    for run, info in done.items():
        key = (run.backbone, run.method)
        if info.seconds is None or info.epochs is None or not get_class(run.backbone).trainable:
            continue
        if key not in settings:
            settings[key] = run_settings(study, *key)[1]
        projected = run_seconds(cost_row(costs, *key)[0], sizes[run.dataset], info.epochs, settings[key])
        n, measured_sum, projected_sum = found.get(key, (0, 0.0, 0.0))
        found[key] = (n + 1, measured_sum + info.seconds, projected_sum + projected)
    return found


def _ratio(n: int, measured: float, projected: float) -> float:
    return measured / projected if n and projected > 0 else float("nan")


def _check_finite(value: float, where: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: the projection gives {value!r} seconds; check that row of the cost table")


# --- packing and wall time -------------------------------------------------------------
def card_suffix(name: str) -> str:
    """A card name as the benchmark file names spell it: [A-Za-z0-9_-] only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_") or "unknown"


def find_packing(costs_path: str | Path, costs: pd.DataFrame) -> Path | None:
    """packing_gpu_<card>.csv next to the cost table (the card from its name or its card column),
    when it holds a measurement."""
    costs_path = Path(costs_path)
    suffixes = [costs_path.stem.removeprefix("costs_gpu_")] if costs_path.stem.startswith("costs_gpu_") else []
    if "card" in costs.columns:
        suffixes += [card_suffix(c) for c in costs["card"].dropna().astype(str)]
    for suffix in dict.fromkeys(suffixes):
        candidate = costs_path.parent / f"packing_gpu_{suffix}.csv"
        if candidate.is_file() and _has_rows(candidate):
            return candidate
    return None


def _has_rows(path: Path) -> bool:
    """False for a header-only table (gpu_costs.py measured no packing run); a broken file is
    left to read_packing to name."""
    try:
        return len(pd.read_csv(path)) > 0
    except pd.errors.EmptyDataError:
        return False
    except (OSError, pd.errors.ParserError, UnicodeDecodeError):
        return True


def read_packing(path: str | Path) -> pd.DataFrame:
    """The packing table (backbone, jobs, steps_per_second): checked, one line per bad value."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV packing table ({err})") from None
    missing = [c for c in PACKING_COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"{path}: not a packing table (needs rows and columns {list(PACKING_COLUMNS)})")
    table["steps_per_second"] = _numbers(table, "steps_per_second", path, required=True, positive=True)
    jobs = _numbers(table, "jobs", path, required=True, positive=True)
    if (jobs != jobs.round()).any():
        raise ValueError(f"{path}: jobs must be whole numbers")
    table["jobs"] = jobs.astype(int)
    return table


def speedup(packing: pd.DataFrame, jobs: int, path="the packing table") -> float:
    """Aggregate throughput of `jobs` processes / that of one, averaged over the backbones."""
    measured = sorted(set(packing["jobs"]))
    if jobs not in measured:
        raise ValueError(f"{path}: {jobs} jobs per GPU not measured (measured: {', '.join(map(str, measured))})")
    ratios = []
    for backbone, rows in packing.groupby("backbone"):
        rate = rows.groupby("jobs")["steps_per_second"].mean()
        if jobs in rate.index:
            if 1 not in rate.index:
                raise ValueError(f"{path}: backbone {backbone} has no 1-job row to compare {jobs} jobs with")
            ratios.append(rate[jobs] / rate[1])
    return sum(ratios) / len(ratios)


def wall_hours(gpu_hours: float, gpus: int, speedup_k: float) -> float:
    """Hours of wall time on `gpus` cards whose packed jobs run `speedup_k` times one job's rate."""
    if gpus < 1 or not speedup_k > 0:
        raise ValueError(f"--gpus must be >= 1 and the speedup > 0 (got {gpus}, {speedup_k})")
    return gpu_hours / (gpus * speedup_k)
