"""The paper's tables, built from runs.csv: structure here, Markdown/LaTeX text in `render`.

Main table (MMRec/GUIDER style): one block per backbone with rows "plain", "+GUIDER"
and "Improv." (relative improvement of the means), columns dataset x metric, cells
mean ± std over seeds; the GUIDER cell carries the significance marks of `stats`
(Holm-corrected over all comparisons of the table); the best mean of each column is bold.

Ablation table: one block per backbone with a row per method (plain, GUIDER, each
ablation and denoising baseline that was run), same columns; best per column and block
in bold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from guider.report import identical, stats
from guider.report.labels import (
    backbone_name,
    backbone_order,
    dataset_name,
    dataset_order,
    display_name,
    learn,
    method_order,
    methods_with_role,
    metric_name,
)
from guider.report.runs import BASE_DATA, kind_rank

SEED_MARK = "*"  # significantly better than plain: paired t-test over seeds
USER_MARK = "†"  # significantly better than plain: per-user Wilcoxon signed-rank test
SEED_LOSS_MARK = "°"  # significantly worse than plain: the seed test
USER_LOSS_MARK = "‡"  # significantly worse than plain: the per-user test
DECIMALS = 4
PerUserLoader = Callable[[str], pd.DataFrame]


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    marks: str = ""
    bold: bool = False


@dataclass
class Row:
    block: str  # backbone display name
    label: str  # method display name, or "Improv."
    cells: list[Cell | str | None]  # one per column; str for improvement rows, None when not run
    is_value: bool = True


@dataclass
class Table:
    caption: str
    groups: list[str]  # dataset names, one column group each
    metrics: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(group, metric) for group in self.groups for metric in self.metrics]


def read_per_user(run_dir: str) -> pd.DataFrame:
    """A run's per-user test metrics (userID + one column per metric)."""
    path = Path(run_dir) / "per_user_test.csv"
    if not path.exists():
        raise ValueError(f"{path}: per-user test metrics missing (needed for the Wilcoxon test)")
    frame = pd.read_csv(path)
    if "userID" not in frame.columns:
        raise ValueError(f"{path}: no 'userID' column")
    return frame


def seed_values(runs: pd.DataFrame, dataset: str, backbone: str, method: str, metric: str) -> pd.Series:
    """Test `metric` of each seed of one (dataset, backbone, method) on the base data, by seed."""
    rows = _select(runs, dataset, backbone, method)
    column = f"test.{metric}"
    if column not in runs.columns:
        raise ValueError(f"runs.csv has no column {column!r}; the trainer did not report {metric}")
    return rows.set_index("seed")[column].sort_index()


def user_values(
    runs: pd.DataFrame, dataset: str, backbone: str, method: str, metric: str, load: PerUserLoader = read_per_user
) -> pd.Series:
    """Per-user test `metric` averaged over the seeds of one (dataset, backbone, method), by userID."""
    frames = []
    for run_dir in _select(runs, dataset, backbone, method)["run_dir"]:
        frame = load(run_dir)
        if metric not in frame.columns:
            raise ValueError(f"{run_dir}: per-user file has no column {metric!r}")
        frames.append(frame.set_index("userID")[metric])
    return pd.concat(frames, axis=1).mean(axis=1).sort_index()


def compare(
    runs: pd.DataFrame,
    dataset: str,
    backbone: str,
    metric: str,
    treatment: str,
    baseline: str,
    load: PerUserLoader = read_per_user,
) -> dict:
    """Raw p-values of treatment vs baseline over seeds and over users (unadjusted)."""
    t_seeds, b_seeds = (
        seed_values(runs, dataset, backbone, treatment, metric),
        seed_values(runs, dataset, backbone, baseline, metric),
    )
    seeds = t_seeds.index.intersection(b_seeds.index)
    t_users, b_users = (
        user_values(runs, dataset, backbone, treatment, metric, load),
        user_values(runs, dataset, backbone, baseline, metric, load),
    )
    users = t_users.index.intersection(b_users.index)
    if len(users) != len(t_users) or len(users) != len(b_users):
        raise ValueError(f"{dataset}/{backbone}/{metric}: the two methods were evaluated on different users")
    return {
        "dataset": dataset,
        "backbone": backbone,
        "metric": metric,
        "n_seeds": len(seeds),
        "n_users": len(users),
        "diff_seeds": float((t_seeds[seeds] - b_seeds[seeds]).mean()),  # the direction of each test
        "diff_users": float((t_users[users] - b_users[users]).mean()),
        "p_seeds": stats.paired_ttest(t_seeds[seeds].to_numpy(), b_seeds[seeds].to_numpy()),
        "p_users": stats.wilcoxon(t_users[users].to_numpy(), b_users[users].to_numpy()),
    }


def significance(
    runs: pd.DataFrame,
    metrics: list[str],
    treatment: str = "paper",
    baseline: str = "none",
    load: PerUserLoader = read_per_user,
) -> pd.DataFrame:
    """Every (dataset, backbone, metric) comparison run on the base data, with Holm-adjusted p-values."""
    rows = []
    for dataset in _datasets(runs):
        for backbone in _backbones(runs):
            if _has(runs, dataset, backbone, treatment) and _has(runs, dataset, backbone, baseline):
                rows += [compare(runs, dataset, backbone, m, treatment, baseline, load) for m in metrics]
    columns = ["dataset", "backbone", "metric", "n_seeds", "n_users", "diff_seeds", "diff_users", "p_seeds", "p_users"]
    table = pd.DataFrame(rows, columns=columns)
    table["p_seeds_holm"] = stats.holm(table["p_seeds"].to_numpy()) if len(table) else []
    table["p_users_holm"] = stats.holm(table["p_users"].to_numpy()) if len(table) else []
    return table


def main_table(
    runs: pd.DataFrame,
    metrics: list[str],
    *,
    treatment: str = "paper",
    baseline: str = "none",
    alpha: float = 0.05,
    load: PerUserLoader = read_per_user,
) -> tuple[Table, pd.DataFrame]:
    """The main comparison table and the significance tests behind its marks."""
    learn(runs)
    tests = significance(runs, metrics, treatment, baseline, load)
    datasets = _datasets(runs)
    n_seeds = sorted(set(_select_base(runs).groupby(["dataset", "backbone", "method"]).size()))
    table = Table(
        caption=f"{display_name(treatment)} vs plain backbones: test metrics, mean ± std over {_seed_text(n_seeds)}",
        groups=datasets,
        metrics=list(metrics),
        notes=[
            f"{SEED_MARK} / {USER_MARK}: significantly better than plain, {SEED_LOSS_MARK} / {USER_LOSS_MARK}: "
            f"significantly worse (p < {alpha} in a paired t-test over seeds / a per-user Wilcoxon signed-rank "
            f"test, Holm-corrected over the {len(tests)} comparisons of this table).",
            "Improv.: relative improvement of the mean. Bold: best mean per column.",
        ],
    )
    for backbone in _backbones(runs):
        plain = _value_row(runs, table, backbone, baseline)
        guided = _value_row(runs, table, backbone, treatment, f"+{display_name(treatment)}")
        _add_marks(guided, table, tests[tests["backbone"] == backbone], alpha)
        improvement = Row(
            backbone_name(backbone), "Improv.", [_improvement(b, g) for b, g in zip(plain.cells, guided.cells)], False
        )
        table.rows += [plain, guided, improvement]
    _bold_best(table.rows)
    return table, tests


def ablation_table(runs: pd.DataFrame, metrics: list[str], methods: list[str] | None = None) -> Table:
    """Rows = methods per backbone, columns = dataset x metric, over datasets that ran an ablation."""
    learn(runs)
    base = _select_base(runs)
    present = (
        method_order(base["method"].unique()) if methods is None else [m for m in methods if m in set(base["method"])]
    )
    extra = [m for m in present if m not in ("none", "paper")]
    if not extra:
        raise ValueError("no ablation runs found (methods other than 'none' and 'paper' on the base data)")
    ablated = base[base["method"].isin(extra)]
    datasets = dataset_order(ablated["dataset"])
    table = Table(
        caption="Ablations and denoising baselines: test metrics, mean ± std over seeds",
        groups=datasets,
        metrics=list(metrics),
        notes=["Bold: best mean per column within each backbone."],
    )
    for backbone in backbone_order(ablated["backbone"]):
        block = [_value_row(runs, table, backbone, method) for method in present]
        block = [row for row in block if any(cell is not None for cell in row.cells)]
        _bold_best(block)
        table.rows += block
    note = identical.footnote(identical.identical_pairs(ablated_and_plain(base, ablated), present, list(metrics)))
    table.notes += [note] if note else []
    return table


def ablated_and_plain(base: pd.DataFrame, ablated: pd.DataFrame) -> pd.DataFrame:
    """The base runs of the (dataset, backbone) pairs that ran an ablation, every method."""
    keys = set(zip(ablated["dataset"], ablated["backbone"]))
    return base[[key in keys for key in zip(base["dataset"], base["backbone"])]]


def baselines_table(
    runs: pd.DataFrame,
    metrics: list[str],
    *,
    denoisers: list[str] | None = None,
    treatment: str = "paper",
    baseline: str = "none",
) -> Table:
    """The denoising comparison: per backbone that ran a denoiser (a method whose role is
    'baseline', recorded by the run), the rows plain / +T-CE / +R-CE / +DA-MRS / +GUIDER (those
    present), columns = dataset x metric on the base data."""
    learn(runs)
    base = _select_base(runs)
    denoisers = methods_with_role(base["method"].unique(), "baseline") if denoisers is None else denoisers
    ran = base[base["method"].isin(denoisers)]
    if ran.empty:
        raise ValueError("no denoising baseline runs found (methods whose role is 'baseline', on the base data)")
    methods = [baseline, *denoisers, treatment]
    table = Table(
        caption=f"Denoising baselines and {display_name(treatment)}: test metrics, mean ± std over seeds",
        groups=dataset_order(ran["dataset"]),
        metrics=list(metrics),
        notes=["Bold: best mean per column within each backbone; a missing row: that method was not run there."],
    )
    for backbone in backbone_order(ran["backbone"]):
        labels = {m: None if m == baseline else f"+{display_name(m)}" for m in methods}
        block = [_value_row(runs, table, backbone, m, labels[m]) for m in methods]
        block = [row for row in block if any(cell is not None for cell in row.cells)]
        _bold_best(block)
        table.rows += block
    return table


# --- helpers -------------------------------------------------------------------------
def _select_base(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["data"] == BASE_DATA]


def _select(runs: pd.DataFrame, dataset: str, backbone: str, method: str) -> pd.DataFrame:
    base = _select_base(runs)
    return base[(base["dataset"] == dataset) & (base["backbone"] == backbone) & (base["method"] == method)]


def _has(runs, dataset, backbone, method) -> bool:
    return len(_select(runs, dataset, backbone, method)) > 0


def _datasets(runs: pd.DataFrame) -> list[str]:
    return dataset_order(_select_base(runs)["dataset"])


def _backbones(runs: pd.DataFrame) -> list[str]:
    return backbone_order(_select_base(runs)["backbone"])


def _seed_text(counts: list[int]) -> str:
    if len(counts) == 1:
        return f"{counts[0]} seed" + ("s" if counts[0] != 1 else "")
    return f"{min(counts)}-{max(counts)} seeds"


def _value_row(runs: pd.DataFrame, table: Table, backbone: str, method: str, label: str | None = None) -> Row:
    cells: list[Cell | str | None] = []
    for dataset, metric in table.columns:
        values = seed_values(runs, dataset, backbone, method, metric) if _has(runs, dataset, backbone, method) else None
        cells.append(None if values is None else Cell(*stats.mean_std(values.to_numpy()), n=len(values)))
    return Row(backbone_name(backbone), label or display_name(method), cells)


def _add_marks(row: Row, table: Table, tests: pd.DataFrame, alpha: float) -> None:
    for cell, (dataset, metric) in zip(row.cells, table.columns):
        test = tests[(tests["dataset"] == dataset) & (tests["metric"] == metric)]
        if cell is None or test.empty:
            continue
        cell.marks = significance_marks(test.iloc[0], alpha)


def significance_marks(test: pd.Series, alpha: float) -> str:
    """The marks of one comparison: a gain's (* seeds, † users) or a loss's (° seeds, ‡ users)."""
    marks = ""
    for p, diff, gain, loss in (
        (test["p_seeds_holm"], test["diff_seeds"], SEED_MARK, SEED_LOSS_MARK),
        (test["p_users_holm"], test["diff_users"], USER_MARK, USER_LOSS_MARK),
    ):
        if p < alpha and diff != 0:
            marks += gain if diff > 0 else loss
    return marks


def direction(test: pd.Series, alpha: float) -> str:
    """'gain', 'loss' or 'tie' (no significant difference) of one comparison: significant when
    either test is (after Holm); the tests' directions agree in every case we have seen, and a
    disagreement counts as a tie."""
    signs = {
        1 if diff > 0 else -1
        for p, diff in ((test["p_seeds_holm"], test["diff_seeds"]), (test["p_users_holm"], test["diff_users"]))
        if p < alpha and diff != 0
    }
    return {frozenset({1}): "gain", frozenset({-1}): "loss"}.get(frozenset(signs), "tie")


def _improvement(plain: Cell | None, guided: Cell | None) -> str | None:
    if plain is None or guided is None or plain.mean == 0:
        return None
    return f"{100.0 * (guided.mean - plain.mean) / plain.mean:+.2f}%"


def _bold_best(rows: list[Row]) -> None:
    """Bold the best displayed mean of each column among value rows (ties all bold)."""
    value_rows = [row for row in rows if row.is_value]
    if not value_rows:
        return
    for col in range(len(value_rows[0].cells)):
        cells = [row.cells[col] for row in value_rows if isinstance(row.cells[col], Cell)]
        if not cells:
            continue
        best = max(round(cell.mean, DECIMALS) for cell in cells)
        for cell in cells:
            cell.bold = bool(np.isclose(round(cell.mean, DECIMALS), best, rtol=0, atol=10 ** -(DECIMALS + 2)))


def robustness_table(runs: pd.DataFrame, metric: str) -> Table:
    """The noise study's drops: per dataset and backbone, a row per method; a first column
    "clean" (the base data), then a column per noise kind and ratio > 0 ("add 0.2"; natural:
    one column); each noisy cell the test metric's mean over seeds and, in brackets, its
    relative change from the clean data (summary.noise_curve)."""
    from guider.report.summary import noise_curve

    learn(runs)
    curve = noise_curve(runs, metric)
    noisy = curve[curve["noise_ratio"] != 0]
    if noisy.empty:
        raise ValueError("no noise-study runs found (runs on noisy copies of a dataset)")
    kinds = sorted(set(noisy["noise_kind"]), key=lambda k: (kind_rank(k), k))
    columns = [(k, r) for k in kinds for r in sorted(noisy.loc[noisy["noise_kind"] == k, "noise_ratio"].unique())]
    table = Table(
        caption=f"Robustness: test {metric_name(metric)} on noisy copies (relative change from the clean data)",
        groups=["clean"] + [k if r != r else f"{k} {r:g}" for k, r in columns],
        metrics=[metric],
        notes=[
            "Columns: the clean data, then noise kind and ratio (natural: the low-rated interactions, no ratio). "
            "A cell: mean over seeds (relative change of the mean from the clean data)."
        ],
    )
    for dataset in dataset_order(noisy["dataset"]):
        for backbone in backbone_order(noisy.loc[noisy["dataset"] == dataset, "backbone"]):
            sel = curve[(curve["dataset"] == dataset) & (curve["backbone"] == backbone)]
            block = f"{dataset_name(dataset)} · {backbone_name(backbone)}"
            for method in method_order(sel["method"].unique()):
                rows = sel[sel["method"] == method]
                cells = [_clean_cell(rows)] + [_drop_cell(rows, kind, ratio) for kind, ratio in columns]
                table.rows.append(Row(block, display_name(method), cells))
    return table


def _clean_cell(rows: pd.DataFrame) -> str | None:
    """The method's mean on the clean data (ratio 0, the same under every kind), None without base runs."""
    clean = rows[rows["noise_ratio"] == 0]
    return None if clean.empty else f"{float(clean['mean'].iloc[0]):.{DECIMALS}f}"


def _drop_cell(rows: pd.DataFrame, kind: str, ratio: float) -> str | None:
    """'0.1234 (-5.6%)' of one method at one noise level, None when it did not run there."""
    same_ratio = rows["noise_ratio"].isna() if ratio != ratio else rows["noise_ratio"] == ratio
    at = rows[(rows["noise_kind"] == kind) & same_ratio]
    if at.empty:
        return None
    mean, drop = float(at["mean"].iloc[0]), float(at["drop"].iloc[0])
    return f"{mean:.{DECIMALS}f}" + ("" if drop != drop else f" ({drop:+.1%})")
