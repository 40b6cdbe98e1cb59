"""Machine-readable summaries of runs.csv for DVC: headline metrics and the noise curve."""

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


def noise_curve(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Long table: dataset, backbone, method, noise_ratio, mean, std, n (datasets of the noise study only)."""
    noisy_datasets = runs.loc[runs["data"] != BASE_DATA, "dataset"].unique()
    study = runs[runs["dataset"].isin(noisy_datasets)]
    noisy_keys = set(zip(*[study.loc[study["data"] != BASE_DATA, c] for c in ("dataset", "backbone", "method")]))
    rows = []
    for (dataset, backbone, method, ratio), sel in study.groupby(["dataset", "backbone", "method", "noise_ratio"]):
        if (dataset, backbone, method) not in noisy_keys:
            continue
        mean, std = mean_std(sel[_column(sel, metric)].to_numpy())
        rows.append(
            {
                "dataset": dataset,
                "backbone": backbone,
                "method": method,
                "noise_ratio": ratio,
                "metric": metric,
                "mean": mean,
                "std": std,
                "n": len(sel),
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "backbone", "method", "noise_ratio", "metric", "mean", "std", "n"])


def _column(rows: pd.DataFrame, metric: str) -> str:
    column = f"test.{metric}"
    if column not in rows.columns:
        raise ValueError(f"runs.csv has no column {column!r}")
    return column
