"""Machine-readable summaries of runs.csv for DVC: headline metrics and the noise curve (per noise kind)."""

from __future__ import annotations

import pandas as pd

from guider.report.runs import BASE_DATA
from guider.report.stats import mean_std


def headline_metrics(runs: pd.DataFrame, metrics: list[str]) -> dict:
    """{dataset: {backbone: {method: {metric: mean over seeds}}}} on the base data, plus run counts.

    The shape `dvc metrics show/diff` flattens into one column per cell.
    """
    out: dict = {"n_runs": int(len(runs)), "n_seeds": int(runs["seed"].nunique()), "base": {}}
    base = runs[runs["data"] == BASE_DATA]
    for (dataset, backbone, method), rows in base.groupby(["dataset", "backbone", "method"], sort=False):
        cell = out["base"].setdefault(dataset, {}).setdefault(backbone, {})
        cell[method] = {metric: round(mean_std(rows[_column(rows, metric)].to_numpy())[0], 6) for metric in metrics}
    return out


CURVE_COLUMNS = ["dataset", "noise_kind", "backbone", "method", "noise_ratio", "metric", "mean", "std", "n", "drop"]


def noise_curve(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Long table of the noise study: per dataset, noise kind, backbone and method, the test
    metric's mean, std and run count at each ratio, the base data counting as ratio 0 of every
    kind, and `drop`: the relative change of the mean from ratio 0 (-0.1 = 10 % lower; NaN
    without base runs). Only (dataset, backbone, method) triples that ran on noisy data."""
    noisy = runs[runs["data"] != BASE_DATA]
    rows = []
    for (dataset, kind, backbone, method), sel in noisy.groupby(["dataset", "noise_kind", "backbone", "method"]):
        base = runs[
            (runs["data"] == BASE_DATA)
            & (runs["dataset"] == dataset)
            & (runs["backbone"] == backbone)
            & (runs["method"] == method)
        ]
        levels = pd.concat([base, sel])
        clean = mean_std(base[_column(base, metric)].to_numpy())[0] if len(base) else float("nan")
        for ratio, at in levels.groupby("noise_ratio", dropna=False):
            mean, std = mean_std(at[_column(at, metric)].to_numpy())
            rows.append(
                {
                    "dataset": dataset,
                    "noise_kind": kind,
                    "backbone": backbone,
                    "method": method,
                    "noise_ratio": ratio,
                    "metric": metric,
                    "mean": mean,
                    "std": std,
                    "n": len(at),
                    "drop": mean / clean - 1.0 if clean == clean and clean != 0 else float("nan"),
                }
            )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _column(rows: pd.DataFrame, metric: str) -> str:
    column = f"test.{metric}"
    if column not in rows.columns:
        raise ValueError(f"runs.csv has no column {column!r}")
    return column
