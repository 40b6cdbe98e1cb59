"""The report's figures (matplotlib), each saved as PDF and PNG.

Every figure is a function of runs.csv (and of the collected training curves), so the
workflow can redraw them without touching a run. Error bars and bands are ± one sample
standard deviation over seeds.
"""

from __future__ import annotations

import colorsys
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from guider.report import identical  # noqa: E402
from guider.report.labels import (  # noqa: E402
    backbone_name,
    backbone_order,
    dataset_name,
    dataset_order,
    display_name,
    learn,
    method_order,
    metric_long_name,
)
from guider.report.runs import BASE_DATA, NO_NOISE, kind_rank  # noqa: E402
from guider.runs.atomic import atomic_path  # noqa: E402

FORMATS = ("pdf", "png")
DPI = 150
# denoise.json of a GUIDER run: precision/recall of AMSC's false set against `is_noise`
DETECTION_COLUMNS = ("detect.noise_kind.precision", "detect.noise_kind.recall")  # denoise.json, per kind
RANDOM_DETECTOR = {  # a random false set of the same size: precision = base rate, recall = its share of train
    "detect.noise_kind.precision": "detect.noise_kind.base_rate",
    "detect.noise_kind.recall": "detect.false_ratio",
}
NOISE_AXIS = {"add": "added interactions", "delete": "deleted interactions", "modality": "swapped modalities"}
_METHOD_COLORS = {"none": "#7f7f7f", "paper": "#1f77b4"}
_PALETTE = plt.get_cmap("tab10").colors
# tab10 without GUIDER blue and plain grey, then tab20's lighter shades of the same hues
_OTHER_METHODS = [c for i, c in enumerate(_PALETTE) if i not in (0, 7)]
_OTHER_METHODS += [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i % 2 and i not in (1, 15)]


def save_figure(fig: plt.Figure, stem: str | Path) -> list[Path]:
    """Write `stem`.pdf and `stem`.png atomically; close the figure."""
    paths = []
    for fmt in FORMATS:
        path = Path(f"{stem}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=_metadata(fmt))
        paths.append(path)
    plt.close(fig)
    return paths


def method_color(method: str, methods: list[str]) -> tuple | str:
    """A colour of its own for each method of a figure: plain grey, GUIDER blue, the others from
    tab10 and tab20, and beyond those hues spaced by the golden angle (the palette never runs out)."""
    if method in _METHOD_COLORS:
        return _METHOD_COLORS[method]
    others = [m for m in methods if m not in _METHOD_COLORS]
    index = others.index(method)
    if index < len(_OTHER_METHODS):
        return _OTHER_METHODS[index]
    hue = (0.11 + 0.618033988749895 * (index - len(_OTHER_METHODS))) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.65, 0.55 + 0.3 * ((index // 7) % 2))


def noise_axis(kind: str) -> str:
    return NOISE_AXIS.get(kind, f"{kind} noise")


def _has_ratio(rows: pd.DataFrame, kind: str) -> bool:
    ratios = rows.loc[rows["noise_kind"] == kind, "noise_ratio"]
    return bool(len(ratios)) and bool(ratios.notna().all())


def comparison_bars(runs: pd.DataFrame, metric: str, methods: tuple[str, ...] = ("none", "paper")) -> plt.Figure:
    """One panel per dataset: grouped bars, backbone x method, on the base data."""
    learn(runs)
    base = _require(
        runs[(runs["data"] == BASE_DATA) & runs["method"].isin(methods)], "plain/GUIDER runs on the base data"
    )
    return _grouped_bar_panels(base, metric, list(methods), title="Test {metric}: plain backbone vs GUIDER")


def ablation_bars(runs: pd.DataFrame, metric: str) -> plt.Figure:
    """One panel per dataset that ran ablations: grouped bars, backbone x method."""
    learn(runs)
    base = runs[runs["data"] == BASE_DATA]
    extra = [m for m in method_order(base["method"].unique()) if m not in ("none", "paper")]
    if not extra:
        raise ValueError("no ablation runs in runs.csv (methods other than 'none' and 'paper' on the base data)")
    ablated = base[base["method"].isin(extra)]
    subset = base[base["dataset"].isin(ablated["dataset"]) & base["backbone"].isin(ablated["backbone"])]
    methods = method_order(subset["method"].unique())
    fig = _grouped_bar_panels(subset, metric, methods, title="Test {metric}: ablations and denoising baselines")
    note = identical.footnote(identical.identical_pairs(subset, methods, [metric]))
    if note:  # under the bottom panel's ticks, above the legend
        bottom = [ax for ax in fig.axes if ax.get_visible()][-1]
        bottom.set_xlabel(textwrap.fill(note, width=int(fig.get_figwidth() * 20)), fontsize=7)
    return fig


def noise_curves(runs: pd.DataFrame, metric: str, kind: str = "add") -> plt.Figure:
    """Test metric vs the ratio of one noise kind (the base data at 0), one panel per
    (dataset, backbone), a line + seed band per method."""
    learn(runs)
    noisy = runs[runs["noise_kind"] == kind]
    _require(noisy, f"'{kind}' noise runs")
    if not _has_ratio(runs, kind):
        raise ValueError(f"noise figure: kind {kind!r} has no ratio axis (its runs record no noise ratio)")
    study = runs[runs["dataset"].isin(noisy["dataset"]) & runs["noise_kind"].isin([kind, NO_NOISE])]
    keys = [
        (d, b)
        for d in dataset_order(noisy["dataset"])
        for b in backbone_order(noisy["backbone"])
        if ((noisy["dataset"] == d) & (noisy["backbone"] == b)).any()
    ]
    methods = method_order(noisy["method"].unique())
    fig, axes = _panel_grid(len(keys), width=4.0, height=3.0)
    for ax, (dataset, backbone) in zip(axes, keys):
        for method in methods:
            sel = study[(study["dataset"] == dataset) & (study["backbone"] == backbone) & (study["method"] == method)]
            summary = _summarise(sel, "noise_ratio", f"test.{metric}")
            color = method_color(method, methods)
            ax.plot(summary.index, summary["mean"], marker="o", color=color, label=display_name(method))
            ax.fill_between(
                summary.index,
                summary["mean"] - summary["std"],
                summary["mean"] + summary["std"],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
        ax.set_title(f"{dataset_name(dataset)} · {backbone_name(backbone)}")
        ax.set_xlabel(f"{noise_axis(kind)} ratio")
        ax.set_ylabel(f"test {metric_long_name(metric)}")
        ax.set_ylim(bottom=0)  # from zero: the drops are compared, a zoomed axis would magnify them
        ax.grid(alpha=0.3)
    _legend_below(fig, axes[0])
    fig.suptitle(f"Robustness to {noise_axis(kind)} (mean ± std over seeds)")
    return fig


def training_curves(curves: pd.DataFrame, metric: str, methods: tuple[str, ...] = ("none", "paper")) -> plt.Figure:
    """Validation metric per epoch on the base data: one panel per dataset, colour = backbone, style = method."""
    column = f"valid_{metric}"
    if column not in curves.columns:
        raise ValueError(f"training curves have no column {column!r} (log.csv of the runs)")
    learn(curves)
    base = _require(curves[(curves["data"] == BASE_DATA) & curves["method"].isin(methods)], "training curves")
    datasets = dataset_order(base["dataset"])
    backbones = backbone_order(base["backbone"])
    styles = {m: s for m, s in zip(methods, ("--", "-", ":", "-."))}
    fig, axes = _panel_grid(len(datasets), width=5.0, height=3.4)
    for ax, dataset in zip(axes, datasets):
        for b_index, backbone in enumerate(backbones):
            for method in methods:
                sel = base[(base["dataset"] == dataset) & (base["backbone"] == backbone) & (base["method"] == method)]
                mean = _common_epoch_mean(sel, column)
                if mean.empty:
                    continue
                ax.plot(
                    mean.index,
                    mean.to_numpy(),
                    linestyle=styles[method],
                    color=_PALETTE[b_index % len(_PALETTE)],
                    label=f"{backbone_name(backbone)} {display_name(method)}",
                )
        ax.set_title(dataset_name(dataset))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"valid {metric_long_name(metric)}")
        ax.grid(alpha=0.3)
    _legend_below(fig, axes[0], ncol=min(len(backbones), 5))
    fig.suptitle("Training curves (mean over seeds, epochs reached by every seed)")
    return fig


def detection_quality(runs: pd.DataFrame, method: str = "paper") -> plt.Figure:
    """Precision and recall of AMSC's false set against each noise kind's labels (rows for
    add and natural, the interactions of the swapped items for modality) vs the ratio, one
    row of two panels per (dataset, kind); the dotted line is a random detector (its
    precision is the labels' base rate, its recall the false set's share of train)."""
    learn(runs)
    cols = list(DETECTION_COLUMNS)
    scored = runs[(runs["data"] != BASE_DATA) & (runs["method"] == method)]
    if not set(cols) <= set(runs.columns) or scored[cols].isna().all().all():
        raise ValueError(f"no AMSC detection scores (denoise.json) in the '{method}' runs on noisy data")
    scored = scored[scored[cols].notna().all(axis=1)]
    panels = [(d, k) for d in dataset_order(scored["dataset"]) for k in _kinds(scored) if _any(scored, d, k)]
    backbones = backbone_order(scored["backbone"])
    fig, axes = _panel_grid(2 * len(panels), width=4.2, height=3.0, ncols=2)
    for p_index, (dataset, kind) in enumerate(panels):
        at = scored[(scored["dataset"] == dataset) & (scored["noise_kind"] == kind)]
        ratio_less = not _has_ratio(at, kind)
        if ratio_less:  # no ratio (natural): one point, drawn at 0
            at = at.assign(noise_ratio=0.0)
        for ax, col in zip(axes[2 * p_index : 2 * p_index + 2], cols):
            for b_index, backbone in enumerate(backbones):
                summary = _summarise(at[at["backbone"] == backbone], "noise_ratio", col)
                ax.errorbar(
                    summary.index,
                    summary["mean"],
                    yerr=summary["std"],
                    marker="o",
                    capsize=3,
                    color=_PALETTE[b_index % len(_PALETTE)],
                    label=backbone_name(backbone),
                )
            chance = at.groupby("noise_ratio")[RANDOM_DETECTOR[col]].mean()
            ax.plot(
                chance.index,
                chance.to_numpy(),
                color="black",
                linestyle=":",
                marker="_",
                markersize=12,
                label="random detector",
            )
            ax.set_title(f"{dataset_name(dataset)} · {kind} · AMSC {col.split('.')[-1]}")
            ax.set_xlabel(f"{kind} (no ratio)" if ratio_less else f"{noise_axis(kind)} ratio")
            ax.set_ylabel(col.split(".")[-1])
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
    _legend_below(fig, axes[0], ncol=min(len(backbones) + 1, 6))
    fig.suptitle("Noise detection: AMSC's false set vs each noise kind's labels (mean ± std over seeds)")
    return fig


def _kinds(rows: pd.DataFrame) -> list[str]:
    return sorted(set(rows["noise_kind"]) - {NO_NOISE}, key=lambda k: (kind_rank(k), k))


def _any(rows: pd.DataFrame, dataset: str, kind: str) -> bool:
    return bool(((rows["dataset"] == dataset) & (rows["noise_kind"] == kind)).any())


# --- helpers -------------------------------------------------------------------------
def _grouped_bar_panels(runs: pd.DataFrame, metric: str, methods: list[str], title: str) -> plt.Figure:
    datasets = dataset_order(runs["dataset"])
    backbones = backbone_order(runs["backbone"])
    width = 0.8 / len(methods)
    fig, axes = _panel_grid(
        len(datasets),
        width=max(4.5, 0.25 * len(backbones) * len(methods) + 1.5),
        height=3.4,
        ncols=1 if len(methods) > 3 else 2,
    )
    for ax, dataset in zip(axes, datasets):
        x = np.arange(len(backbones))
        for m_index, method in enumerate(methods):
            summary = _summarise(
                runs[(runs["dataset"] == dataset) & (runs["method"] == method)], "backbone", f"test.{metric}"
            )
            means = summary["mean"].reindex(backbones).to_numpy()
            stds = summary["std"].reindex(backbones).to_numpy()
            ax.bar(
                x + (m_index - (len(methods) - 1) / 2) * width,
                means,
                width,
                yerr=stds,
                capsize=2,
                color=method_color(method, methods),
                label=display_name(method),
            )
        ax.set_xticks(x, [backbone_name(b) for b in backbones])
        ax.set_title(dataset_name(dataset))
        ax.set_ylabel(f"test {metric_long_name(metric)}")
        ax.set_ylim(bottom=0)  # bars compared by height start at zero
        ax.grid(axis="y", alpha=0.3)
    _legend_below(fig, axes[0], ncol=min(len(methods), 5))
    fig.suptitle(title.format(metric=metric_long_name(metric)))
    return fig


def _summarise(rows: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """mean and sample std (0 for one seed) of `column` grouped by `by`, sorted by `by`."""
    if column not in rows.columns:
        raise ValueError(f"runs.csv has no column {column!r}")
    grouped = rows.groupby(by)[column]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0)}).sort_index()


def _common_epoch_mean(rows: pd.DataFrame, column: str) -> pd.Series:
    """Mean over seeds of `column` per epoch, over the epochs with a value in every seed."""
    rows = rows.dropna(subset=[column])
    if rows.empty:
        return pd.Series(dtype=float)
    wide = rows.pivot_table(index="epoch", columns="seed", values=column)
    return wide.dropna().mean(axis=1)


def _panel_grid(n: int, width: float, height: float, ncols: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows + 0.9), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig: plt.Figure, ax: plt.Axes, ncol: int = 4) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _require(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    if rows.empty:
        raise ValueError(f"no {what} in the input: nothing to plot")
    return rows


def _metadata(fmt: str) -> dict:
    """Fixed metadata so that redrawing the same data gives the same bytes."""
    return {"CreationDate": None} if fmt == "pdf" else {"Software": None}
