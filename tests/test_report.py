"""guider.report: run collection, statistics, tables, figures and the `guider report` CLI.

Runs are fabricated (metrics.json, config.json, per_user_test.csv, log.csv, denoise.json)
with known values, so every aggregate is checked against a hand computation and every
test statistic against scipy or a naive re-implementation.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats as sps

from guider.cli import main as cli_main
from guider.data.noise import noise_kind, parse_level
from guider.engine.trainer import run_labels
from guider.report import figures, render, stats, summary, tables
from guider.report.labels import backbone_name, backbone_order, display_name, method_order
from guider.report.runs import collect_curves, collect_runs, read_run


def data_name(ratio, kind: str = "add") -> str:
    """The data folder of a noise level (the noise-kind registry's name for it)."""
    return noise_kind(kind).folder(None if ratio != ratio else ratio)


METRICS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]
BUMP = np.random.default_rng(7).uniform(-0.004, 0.012, size=40)  # per-user GUIDER effect in the fabricated study


# --- fabrication ---------------------------------------------------------------------
def write_run(
    root: Path,
    dataset: str,
    data: str,
    backbone: str,
    method: str,
    seed: int,
    test: dict[str, float],
    per_user: pd.DataFrame | None = None,
    epochs: int = 4,
    detect: dict | None = None,
) -> Path:
    run_dir = root / dataset / data / backbone / method / f"seed{seed}"
    run_dir.mkdir(parents=True)
    kind, ratio = parse_level(data)
    metrics = {
        "dataset": dataset,
        "backbone": backbone,
        "method": method,
        "seed": seed,
        "study": {
            "dataset": dataset,
            "data": data,
            "noise_kind": kind,
            "noise_ratio": None if ratio != ratio else ratio,
        },
        "labels": run_labels(backbone, method),
        "best_epoch": epochs - 1,
        "epochs_run": epochs,
        "valid": {k: v * 1.1 for k, v in test.items()},
        "test": test,
        "train_seconds": 2.0 * epochs,
        "seconds_per_epoch": 2.0,
        "device": "cpu",
        "versions": {"guider": "0.1.0"},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "config.json").write_text(json.dumps({"backbone": backbone, "method": method}))
    if per_user is None:
        per_user = pd.DataFrame({"userID": range(3), **{k: [v] * 3 for k, v in test.items()}})
    per_user.to_csv(run_dir / "per_user_test.csv", index=False)
    log = pd.DataFrame(
        {
            "epoch": range(epochs),
            "train_loss": np.linspace(0.7, 0.3, epochs),
            "valid_recall@20": np.linspace(0.01, test.get("recall@20", 0.05), epochs),
        }
    )
    log.to_csv(run_dir / "log.csv", index=False)
    if detect is not None:
        (run_dir / "denoise.json").write_text(json.dumps(detect))
    return run_dir / "metrics.json"


def metric_values(base: float) -> dict[str, float]:
    return {"recall@10": base * 0.6, "recall@20": base, "ndcg@10": base * 0.35, "ndcg@20": base * 0.45}


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path)


NOISE_LEVELS = [("add", 0.1), ("add", 0.3), ("modality", 0.2), ("delete", 0.2), ("natural", None)]  # noisy copies
NATURAL_LEVEL = 0.15  # the metric drop the fixture gives the natural copy (which has no ratio)


def make_study(tmp_path: Path):
    """2 datasets x 2 backbones x {none, paper} x 3 seeds on base data, ablations on 'baby', a noise study
    on 'baby' (NOISE_LEVELS: add, modality and delete copies).

    recall@20 of (dataset, backbone, method, seed) = BASE[dataset, backbone] * (1 + LIFT[method]) + 0.001 * seed;
    per-user values: 40 users, user u gets recall@20 + 0.002 * (u - 19.5) (+ BUMP[u] for GUIDER, BUMP random, tie-free).
    """
    base = {("baby", "bpr"): 0.05, ("baby", "lightgcn"): 0.07, ("sports", "bpr"): 0.06, ("sports", "lightgcn"): 0.08}
    lift = {"none": 0.0, "paper": 0.1, "no_amsc": 0.05, "tce": 0.02}
    paths = []
    for (dataset, backbone), level in base.items():
        methods = ["none", "paper"] + (["no_amsc", "tce"] if dataset == "baby" else [])
        for method, seed in itertools.product(methods, range(3)):
            r20 = level * (1 + lift[method]) + 0.001 * seed
            users = np.arange(40)
            bump = BUMP if method == "paper" else 0.0
            per_user = pd.DataFrame(
                {"userID": users, **{k: v + 0.002 * (users - 19.5) + bump for k, v in metric_values(r20).items()}}
            )
            paths.append(
                write_run(tmp_path / "runs", dataset, "base", backbone, method, seed, metric_values(r20), per_user)
            )
    for (kind, ratio), backbone, method, seed in itertools.product(
        NOISE_LEVELS, ["bpr", "lightgcn"], ["none", "paper"], range(3)
    ):
        level = NATURAL_LEVEL if ratio is None else ratio
        r20 = base[("baby", backbone)] * (1 - level) * (1 + lift[method]) + 0.001 * seed
        labelled = {"kind": kind, "precision": 0.3 + level, "recall": 0.5 - level / 2 + 0.01 * seed, "base_rate": level}
        detect = (
            {
                "detector": "amsc",
                "false_ratio": 0.12,
                "injected_noise": {**labelled, "f1": 0.4, "lift": None} if kind == "add" else None,
                "noise_kind": None if kind == "delete" else labelled,
            }
            if method == "paper"
            else None
        )
        paths.append(
            write_run(
                tmp_path / "runs",
                "baby",
                data_name(level, kind),
                backbone,
                method,
                seed,
                metric_values(r20),
                detect=detect,
            )
        )
    return collect_runs(paths), paths


# --- runs ----------------------------------------------------------------------------
def test_noise_levels_are_named_by_the_noise_kind_registry():
    assert parse_level("add0.2") == ("add", 0.2) and parse_level("base") == ("none", 0.0)
    assert data_name(0.0) == "base" and data_name(0.0, "delete") == "base"
    assert parse_level("modality0.4") == ("modality", 0.4) and data_name(0.4, "modality") == "modality0.4"
    kind, ratio = parse_level("natural")
    assert kind == "natural" and math.isnan(ratio) and data_name(float("nan"), "natural") == "natural"
    for ratio in (0.1, 0.2, 0.3, 0.5, 1.0):
        for kind in ("add", "delete", "modality"):
            assert parse_level(data_name(ratio, kind)) == (kind, ratio)
    for bad in ("dirty", "noise0.2", "add", "flip0.1"):  # noise0.2: the name before kinds existed
        with pytest.raises(ValueError, match="neither 'base' nor a noise level"):
            parse_level(bad)
    with pytest.raises(ValueError, match="unknown noise kind 'flip'"):
        data_name(0.2, "flip")


def test_labels_come_from_the_runs(study):
    """Display names, roles and table order are what the runs recorded (no registry import)."""
    runs, _ = study
    from guider.report import labels

    labels.learn(runs)
    assert [display_name(m) for m in ("none", "paper", "no_amsc", "tce")] == ["plain", "GUIDER", "w/o AMSC", "T-CE"]
    assert method_order(["tce", "mine", "paper", "none", "no_amsc"]) == ["none", "paper", "no_amsc", "tce", "mine"]
    assert labels.role("tce") == "baseline" and labels.role("no_amsc") == "ablation" and labels.role("mine") == "other"
    assert display_name("mine") == "mine"  # a method no run recorded keeps its name
    assert backbone_order(["x", "lightgcn", "bpr"]) == ["bpr", "lightgcn", "x"]
    assert (backbone_name("lightgcn"), backbone_name("x")) == ("LightGCN", "x")
    assert set(runs["method_role"]) == {"plain", "guider", "ablation", "baseline"}


def test_the_report_imports_no_model_or_method_code():
    import subprocess
    import sys

    code = (
        "import sys; import guider.report.tables, guider.report.figures, guider.report.runs, guider.report.labels; "
        "import guider.report.summary, guider.report.tuning_table; "
        "bad = [m for m in sys.modules if m.startswith(('guider.models', 'guider.methods', 'guider.methods.base'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_run_without_coordinates_is_refused_with_the_way_forward(tmp_path):
    path = write_run(tmp_path, "baby", "base", "bpr", "tce", 0, metric_values(0.05))
    metrics = json.loads(path.read_text())
    del metrics["study"]
    path.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="no study coordinates.*--resume"):
        read_run(path)


def test_a_run_in_the_wrong_folder_is_an_error_naming_it(tmp_path):
    path = write_run(tmp_path, "baby", "add0.2", "bpr", "paper", 1, metric_values(0.05))
    metrics = json.loads(path.read_text())
    metrics["study"]["data"] = "add0.3"
    path.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=r"seed1/metrics.json: run does not match its folder: data='add0.3'"):
        read_run(path)


def test_collect_refuses_a_run_whose_data_changed_after_training(tmp_path):
    from conftest import make_dataset

    from guider.data import save_dataset

    data = save_dataset(make_dataset(), tmp_path / "data")
    out = tmp_path / "runs" / "tiny" / "base" / "bpr" / "none" / "seed0"
    args = ["train", "--data", str(data), "--backbone", "bpr", "--out", str(out), "--epochs", "1", "--no-progress"]
    assert cli_main(args) == 0
    assert len(collect_runs([out / "metrics.json"])) == 1
    save_dataset(make_dataset(seed=1), data)  # the folder is replaced by other data
    from guider.report import runs as runs_module

    runs_module._fingerprint_of.cache_clear()
    with pytest.raises(ValueError, match="the dataset changed after training"):
        collect_runs([out / "metrics.json"])


def test_collect_runs_one_row_per_run(study):
    runs, paths = study
    assert len(runs) == len(paths) == 4 * 2 * 3 + 2 * 2 * 3 + len(NOISE_LEVELS) * 2 * 2 * 3
    row = runs[
        (runs.dataset == "sports") & (runs.backbone == "lightgcn") & (runs.method == "paper") & (runs.seed == 2)
    ].iloc[0]
    assert row["test.recall@20"] == pytest.approx(0.08 * 1.1 + 0.002)
    assert row["valid.recall@20"] == pytest.approx((0.08 * 1.1 + 0.002) * 1.1)
    assert (row["method"], row["data"], row["noise_ratio"]) == ("paper", "base", 0.0)
    assert "variant" not in runs.columns and "denoise" not in runs.columns  # one name: method
    noisy = runs[(runs.data == "add0.3") & (runs.method == "paper") & (runs.seed == 1)].iloc[0]
    assert (noisy["noise_kind"], noisy["noise_ratio"]) == ("add", 0.3)
    assert noisy["detect.injected_noise.recall"] == pytest.approx(0.5 - 0.15 + 0.01)
    assert noisy["detect.noise_kind.recall"] == pytest.approx(0.5 - 0.15 + 0.01)
    assert (
        noisy["detect.false_ratio"] == 0.12 and "detect.injected_noise.lift" not in runs.columns
    )  # None: not a number
    assert math.isnan(runs[(runs.data == "add0.3") & (runs.method == "none")].iloc[0]["detect.injected_noise.recall"])
    assert set(runs.loc[runs.data == "base", "noise_kind"]) == {"none"}


def test_collect_runs_rejects_inconsistent_or_missing_runs(tmp_path):
    good = write_run(tmp_path, "baby", "base", "bpr", "none", 0, metric_values(0.05))
    misplaced = write_run(tmp_path / "x", "baby", "base", "lightgcn", "paper", 1, metric_values(0.05))
    metrics = json.loads(misplaced.read_text())
    metrics["backbone"] = "bpr"
    misplaced.write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="backbone='bpr' but the folder says 'lightgcn'"):
        read_run(misplaced)
    wrong_method = write_run(tmp_path / "y", "baby", "base", "bpr", "tce", 0, metric_values(0.05))
    wrong_method.with_name("config.json").write_text(json.dumps({"method": "rce"}))
    with pytest.raises(ValueError, match="method='rce' but the folder says 'tce'"):
        read_run(wrong_method)
    broken = write_run(tmp_path / "z", "baby", "base", "bpr", "none", 1, metric_values(0.05))
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_run(broken)
    with pytest.raises(ValueError, match="file missing"):
        read_run(tmp_path / "baby/base/bpr/none/seed7/metrics.json")
    with pytest.raises(ValueError, match="listed twice"):
        collect_runs([good, good])
    with pytest.raises(ValueError, match="empty"):
        collect_runs([])


def test_collect_curves_keys_every_epoch(study):
    runs, _ = study
    curves = collect_curves(runs)
    assert len(curves) == 4 * len(runs)
    one = curves[
        (curves.dataset == "baby")
        & (curves.backbone == "bpr")
        & (curves.method == "paper")
        & (curves.seed == 0)
        & (curves.data == "base")
    ]
    assert one["epoch"].tolist() == [0, 1, 2, 3]
    assert one["valid_recall@20"].iloc[-1] == pytest.approx(0.05 * 1.1)


# --- stats ---------------------------------------------------------------------------
def test_mean_std_is_the_sample_std():
    assert stats.mean_std([1.0, 2.0, 4.0]) == pytest.approx(
        (7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    )
    assert stats.mean_std([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError):
        stats.mean_std([])


def test_paired_ttest_matches_the_textbook_formula():
    a, b = np.array([0.11, 0.12, 0.135, 0.128]), np.array([0.10, 0.115, 0.12, 0.121])
    d = a - b
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    expected = 2 * sps.t.sf(abs(t), df=len(d) - 1)
    assert stats.paired_ttest(a, b) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(stats.paired_ttest([0.1], [0.2]))  # one pair
    assert math.isnan(stats.paired_ttest([0.2, 0.3], [0.1, 0.2]))  # constant difference: no variance
    with pytest.raises(ValueError, match="equal length"):
        stats.paired_ttest([0.1, 0.2], [0.1])


def test_wilcoxon_exact_small_case_by_hand():
    # differences +1, +2, +3, +4, -5: ranks 1..5, W- = 5, W+ = 10; exact two-sided p =
    # 2 * P(W- <= 5) over the 2^5 sign patterns.
    d = np.array([1.0, 2.0, 3.0, 4.0, -5.0])
    rank_sums = [sum(r for r, s in zip(range(1, 6), signs) if s) for signs in itertools.product([0, 1], repeat=5)]
    p_exact = 2 * sum(w <= 5 for w in rank_sums) / 32
    assert stats.wilcoxon(d, np.zeros(5)) == pytest.approx(p_exact)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.1, 0.02, 300), rng.normal(0.1, 0.02, 300) - 0.004
    assert stats.wilcoxon(a, b) == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert math.isnan(stats.wilcoxon([0.1, 0.2], [0.1, 0.2]))


def test_holm_against_a_naive_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert np.allclose(stats.holm(p)[:4], [0.03, 0.06, 0.06, 0.02]) and math.isnan(stats.holm(p)[4])
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.uniform(0, 0.2, size=7)
        naive = np.empty(7)
        order = np.argsort(q)
        for rank, i in enumerate(order):
            naive[i] = min(1.0, max((7 - r) * q[order[r]] for r in range(rank + 1)))
        assert np.allclose(stats.holm(q), naive)
    assert stats.holm([]).size == 0


# --- tables --------------------------------------------------------------------------
def test_main_table_cells_are_hand_computed_means(study):
    runs, _ = study
    table, tests = tables.main_table(runs, METRICS)
    assert table.groups == ["baby", "sports"] and len(table.columns) == 8
    assert [(r.block, r.label) for r in table.rows[:3]] == [("BPR", "plain"), ("BPR", "+GUIDER"), ("BPR", "Improv.")]
    col = table.columns.index(("sports", "recall@20"))
    lgcn_plain, lgcn_guider, lgcn_imp = table.rows[3:6]
    values = [0.08 + 0.001 * s for s in range(3)]
    assert lgcn_plain.cells[col].mean == pytest.approx(sum(values) / 3)
    assert lgcn_plain.cells[col].std == pytest.approx(0.001)
    guided = [0.088 + 0.001 * s for s in range(3)]
    assert lgcn_guider.cells[col].mean == pytest.approx(sum(guided) / 3)
    assert lgcn_imp.cells[col] == f"{100 * (0.089 - 0.081) / 0.081:+.2f}%"
    # best per column: LightGCN+GUIDER on every column, nothing else bold
    bold = [(r.label, r.block) for r in table.rows if r.is_value for c in r.cells if c.bold]
    assert set(bold) == {("+GUIDER", "LightGCN")} and len(bold) == 8


def test_significance_matches_scipy_with_holm(study):
    runs, _ = study
    table, tests = tables.main_table(runs, METRICS)
    assert len(tests) == 2 * 2 * 4
    row = tests[(tests.dataset == "baby") & (tests.backbone == "bpr") & (tests.metric == "recall@20")].iloc[0]
    plain = [0.05 + 0.001 * s for s in range(3)]
    guided = [0.055 + 0.001 * s for s in range(3)]
    assert math.isnan(row["p_seeds"])  # constant paired difference: undefined, never marked
    users = np.arange(40)
    plain_u = np.mean([p + 0.002 * (users - 19.5) for p in plain], axis=0)
    guided_u = np.mean([g + 0.002 * (users - 19.5) + BUMP for g in guided], axis=0)
    assert row["p_users"] == pytest.approx(sps.wilcoxon(guided_u, plain_u).pvalue)
    assert np.allclose(tests["p_users_holm"], stats.holm(tests["p_users"].to_numpy()), equal_nan=True)
    assert row["n_seeds"] == 3 and row["n_users"] == 40
    guider_cell = table.rows[1].cells[table.columns.index(("baby", "recall@20"))]
    assert guider_cell.marks == "†"  # per-user test significant after Holm, seed test undefined


def test_seed_test_marks_when_differences_vary(tmp_path):
    paths = []
    for seed, (p, g) in enumerate([(0.050, 0.060), (0.052, 0.061), (0.049, 0.0605), (0.051, 0.0612)]):
        paths.append(write_run(tmp_path, "baby", "base", "bpr", "none", seed, metric_values(p)))
        paths.append(write_run(tmp_path, "baby", "base", "bpr", "paper", seed, metric_values(g)))
    runs = collect_runs(paths)
    table, tests = tables.main_table(runs, ["recall@20"])
    expected = sps.ttest_rel([0.060, 0.061, 0.0605, 0.0612], [0.050, 0.052, 0.049, 0.051]).pvalue
    assert tests["p_seeds"].iloc[0] == pytest.approx(expected)
    assert tests["p_seeds_holm"].iloc[0] == pytest.approx(expected)  # a family of one
    assert table.rows[1].cells[0].marks.startswith("*")


def test_ablation_table_rows_and_bold(study):
    runs, _ = study
    table = tables.ablation_table(runs, ["recall@20", "ndcg@20"])
    assert table.groups == ["baby"]
    assert [(r.block, r.label) for r in table.rows] == [
        (b, m) for b in ("BPR", "LightGCN") for m in ("plain", "GUIDER", "w/o AMSC", "T-CE")
    ]
    r20 = [r.cells[0].mean for r in table.rows[:4]]
    assert r20 == pytest.approx([0.05 * (1 + x) + 0.001 for x in (0.0, 0.1, 0.05, 0.02)])
    assert [r.cells[0].bold for r in table.rows] == [False, True, False, False] * 2
    with pytest.raises(ValueError, match="no ablation runs"):
        tables.ablation_table(runs[runs.method.isin(["none", "paper"])], ["recall@20"])


def test_rows_identical_in_every_seed_get_a_footnote_and_only_they(study):
    from guider.report import identical

    runs, _ = study
    assert not any("every seed" in note for note in tables.ablation_table(runs, ["recall@20"]).notes)
    twin = runs[runs.method == "no_amsc"].assign(method="no_dbpr", method_name="w/o DBPR", method_rank=99)
    both = pd.concat([runs, twin], ignore_index=True)
    methods = ["none", "paper", "no_amsc", "tce", "no_dbpr"]
    assert identical.identical_pairs(both, methods, ["recall@20", "ndcg@20"]) == [("no_amsc", "no_dbpr")]
    notes = tables.ablation_table(both, ["recall@20"]).notes
    assert any(n.startswith("w/o DBPR equals w/o AMSC in every seed and metric by construction: without AMSC")
               for n in notes)  # fmt: skip
    one_seed_off = both.copy()
    one_seed_off.loc[(one_seed_off.method == "no_dbpr") & (one_seed_off.seed == 2), "test.ndcg@20"] += 1e-9
    assert identical.identical_pairs(one_seed_off, methods, ["recall@20", "ndcg@20"]) == []  # every metric, every seed
    other = runs[runs.method == "tce"].assign(method="mine", method_name="Mine", method_rank=98)
    text = identical.footnote(identical.identical_pairs(pd.concat([runs, other]), ["tce", "mine"], ["recall@20"]))
    assert text == "Mine equals T-CE in every seed and metric."  # no reason invented for an unknown pair
    figure = figures.ablation_bars(both, "recall@20")
    assert "w/o DBPR equals w/o AMSC" in figure.axes[-1].get_xlabel().replace("\n", " ")


def test_baselines_table_reads_plain_then_each_denoiser_then_guider(tmp_path):
    """Rows in the order plain / +T-CE / +R-CE / +DA-MRS / +GUIDER whatever order they ran in;
    a method not run on a backbone (DA-MRS on BM3) has no row; the ablations stay out."""
    lift = {"none": 0.0, "no_amsc": 0.5, "damrs_plugin": 0.04, "paper": 0.1, "rce": 0.03, "tce": 0.02}
    paths = []
    for backbone, methods in (("lightgcn", list(lift)), ("bm3", ["paper", "tce", "none", "rce"])):
        for method, seed in itertools.product(methods, range(2)):
            paths.append(
                write_run(tmp_path, "baby", "base", backbone, method, seed, metric_values(0.05 * (1 + lift[method])))
            )
    paths.append(write_run(tmp_path, "sports", "base", "lightgcn", "none", 0, metric_values(0.05)))  # no baseline
    runs = collect_runs(paths)
    table = tables.baselines_table(runs, ["recall@20"])
    assert table.groups == ["baby"]
    assert [(r.block, r.label) for r in table.rows] == [
        ("LightGCN", m) for m in ("plain", "+T-CE", "+R-CE", "+DA-MRS", "+GUIDER")
    ] + [("BM3", m) for m in ("plain", "+T-CE", "+R-CE", "+GUIDER")]
    expected = [0.05 * (1 + lift[m]) for m in ("none", "tce", "rce", "damrs_plugin", "paper")]
    assert [r.cells[0].mean for r in table.rows[:5]] == pytest.approx(expected)
    assert [r.cells[0].bold for r in table.rows] == [False, False, False, False, True] + [False, False, False, True]
    with pytest.raises(ValueError, match="no denoising baseline runs"):
        tables.baselines_table(runs[~runs.method.isin(["tce", "rce", "damrs_plugin"])], ["recall@20"])


def test_tables_follow_the_paper_order_and_skip_unablated_backbones(tmp_path):
    paths = [
        write_run(tmp_path, d, "base", b, m, 0, metric_values(0.05))
        for d in ("sports", "baby")
        for b in ("bm3", "lightgcn", "bpr")
        for m in ("none", "paper")
    ]
    paths += [write_run(tmp_path, "baby", "base", "lightgcn", "tce", 0, metric_values(0.05))]
    runs = collect_runs(paths)
    table, _ = tables.main_table(runs, ["recall@20"])
    assert table.groups == ["baby", "sports"]
    assert [r.block for r in table.rows[::3]] == ["BPR", "LightGCN", "BM3"]
    ablation = tables.ablation_table(runs, ["recall@20"])
    assert ablation.groups == ["baby"] and {r.block for r in ablation.rows} == {"LightGCN"}
    assert [r.label for r in ablation.rows] == ["plain", "GUIDER", "T-CE"]
    assert [r.cells[0].n for r in ablation.rows] == [1, 1, 1]


def test_markdown_and_latex_rendering(study):
    runs, _ = study
    table, _ = tables.main_table(runs, METRICS)
    md = render.markdown(table)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Backbone"))
    assert header.count("|") == 2 + 8 + 1 and "Baby R@20" in header and "Sports N@10" in header
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| Backbone")]
    assert len(body) == 6 and all(line.count("|") == header.count("|") for line in body)
    mean = np.mean([0.077 + 0.001 * s for s in range(3)])
    assert f"**{mean:.4f}±0.0010**" in md  # LightGCN+GUIDER, baby R@20: best of its column
    tex = render.latex(table, label="tab:main")
    assert tex.count("{") == tex.count("}")
    assert tex.count(r"\multicolumn{4}{c}") == 2 and r"\cmidrule(lr){3-6} \cmidrule(lr){7-10}" in tex
    assert rf"\textbf{{{mean:.4f}}}" in tex and r"$^{\dagger}$" in tex and r"\%" in tex
    assert "%" not in tex.replace(r"\%", "")  # every percent sign escaped
    rows = [line for line in tex.splitlines() if line.endswith(r"\\") and not line.startswith(" & &")]
    assert all(line.count("&") == 9 for line in rows)


# --- summary and figures -------------------------------------------------------------
def test_headline_metrics_and_noise_curve(study):
    runs, _ = study
    head = summary.headline_metrics(runs, ["recall@20"])
    assert head["n_runs"] == len(runs) and head["n_seeds"] == 3
    assert head["base"]["sports"]["bpr"]["paper"]["recall@20"] == pytest.approx(0.066 + 0.001)
    curve = summary.noise_curve(runs, "recall@20")
    assert list(curve.columns) == summary.CURVE_COLUMNS and set(curve.dataset) == {"baby"}
    lg = curve[(curve.backbone == "lightgcn") & (curve.method == "paper") & (curve.noise_kind == "add")]
    lg = lg.set_index("noise_ratio")
    assert list(lg.index) == [0.0, 0.1, 0.3]
    assert lg.loc[0.3, "mean"] == pytest.approx(0.07 * 0.7 * 1.1 + 0.001) and lg.loc[0.3, "std"] == pytest.approx(0.001)
    assert lg.loc[0.0, "mean"] == pytest.approx(0.077 + 0.001) and set(curve.method) == {"none", "paper"}
    assert lg.loc[0.0, "drop"] == 0.0
    assert lg.loc[0.3, "drop"] == pytest.approx((0.07 * 0.7 * 1.1 + 0.001) / (0.077 + 0.001) - 1)
    delete = curve[(curve.backbone == "bpr") & (curve.method == "none") & (curve.noise_kind == "delete")]
    assert delete["noise_ratio"].tolist() == [0.0, 0.2] and delete["n"].tolist() == [3, 3]
    assert set(curve.noise_kind) == {"add", "modality", "delete", "natural"}
    natural = curve[(curve.backbone == "bpr") & (curve.method == "paper") & (curve.noise_kind == "natural")]
    assert natural["noise_ratio"].isna().tolist() == [False, True]  # the base data at 0, then the natural copy
    assert natural["drop"].iloc[1] == pytest.approx((0.05 * 0.85 * 1.1 + 0.001) / (0.055 + 0.001) - 1)


def test_robustness_table_lists_each_kind_and_ratio_with_its_drop(study, tmp_path):
    runs, _ = study
    table = tables.robustness_table(runs, "recall@20")
    assert table.groups == ["clean", "add 0.1", "add 0.3", "delete 0.2", "modality 0.2", "natural"]
    rows = {(row.block, row.label): row.cells for row in table.rows}
    assert set(rows) == {(f"Baby · {b}", m) for b in ("BPR", "LightGCN") for m in ("plain", "GUIDER")}
    clean, noisy = 0.077 + 0.001, 0.07 * 0.7 * 1.1 + 0.001
    assert rows[("Baby · LightGCN", "GUIDER")][0] == f"{clean:.4f}"
    assert rows[("Baby · LightGCN", "GUIDER")][2] == f"{noisy:.4f} ({noisy / clean - 1:+.1%})"
    natural = 0.07 * 0.85 * 1.1 + 0.001
    assert rows[("Baby · LightGCN", "GUIDER")][5] == f"{natural:.4f} ({natural / clean - 1:+.1%})"
    with pytest.raises(ValueError, match="no noise-study runs"):
        tables.robustness_table(runs[runs.data == "base"], "recall@20")


@pytest.mark.parametrize("kind", ["comparison", "noise", "noise_delete", "ablation", "curves", "detection"])
def test_every_figure_is_written_as_pdf_and_png(study, tmp_path, kind):
    runs, _ = study
    draw = {
        "comparison": lambda: figures.comparison_bars(runs, "recall@20"),
        "noise": lambda: figures.noise_curves(runs, "recall@20"),
        "noise_delete": lambda: figures.noise_curves(runs, "recall@20", "delete"),
        "ablation": lambda: figures.ablation_bars(runs, "recall@20"),
        "curves": lambda: figures.training_curves(collect_curves(runs), "recall@20"),
        "detection": lambda: figures.detection_quality(runs),
    }[kind]
    first = figures.save_figure(draw(), tmp_path / "a" / kind)
    second = figures.save_figure(draw(), tmp_path / "b" / kind)
    assert [p.suffix for p in first] == [".pdf", ".png"]
    assert first[0].read_bytes().startswith(b"%PDF")
    with Image.open(first[1]) as img:
        assert img.width > 400 and img.height > 300
    assert first[1].read_bytes() == second[1].read_bytes()  # same data, same pixels
    assert not list((tmp_path / "a").glob(".*tmp"))


@pytest.mark.parametrize("n_methods", [11, 40])
def test_every_method_gets_its_own_colour(n_methods):
    from guider.methods import available_methods

    methods = [*available_methods(), *(f"plugin{i}" for i in range(n_methods))][:n_methods]
    colours = [tuple(matplotlib.colors.to_rgb(figures.method_color(m, methods))) for m in methods]
    assert len(set(colours)) == len(methods)


def test_figures_refuse_missing_studies(study):
    runs, _ = study
    base_only = runs[runs.data == "base"]
    with pytest.raises(ValueError, match="'add' noise runs"):
        figures.noise_curves(base_only, "recall@20")
    with pytest.raises(ValueError, match="'natural' has no ratio axis"):
        figures.noise_curves(runs, "recall@20", "natural")
    with pytest.raises(ValueError, match="no AMSC detection"):
        figures.detection_quality(base_only)
    with pytest.raises(ValueError, match="no ablation runs"):
        figures.ablation_bars(runs[runs.method.isin(["none", "paper"])], "recall@20")
    with pytest.raises(ValueError, match="test.hit@3"):
        figures.comparison_bars(runs, "hit@3")


# --- CLI -----------------------------------------------------------------------------
def test_report_cli_end_to_end(study, tmp_path):
    _, paths = study
    out = tmp_path / "out"
    assert (
        cli_main(
            [
                "report",
                "collect",
                "--metrics",
                *map(str, paths),
                "--out",
                str(out / "runs.csv"),
                "--curves",
                str(out / "curves.csv"),
            ]
        )
        == 0
    )
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == len(paths) and (out / "curves.csv").exists()
    assert cli_main(["report", "table", "main", "--runs", str(out / "runs.csv"), "--out", str(out / "main")]) == 0
    robust = ["report", "table", "robustness", "--runs", str(out / "runs.csv"), "--out", str(out / "robustness")]
    assert cli_main([*robust, "--metrics", "ndcg@20"]) == 0
    assert "modality 0.2 n@20" in (out / "robustness.md").read_text().lower() and (out / "robustness.tex").exists()
    figure = ["report", "figure", "noise", "--runs", str(out / "runs.csv"), "--noise-kind", "modality"]
    assert cli_main([*figure, "--out", str(out / "noise_modality")]) == 0
    assert (out / "noise_modality.png").exists()
    assert (
        cli_main(
            [
                "report",
                "table",
                "ablation",
                "--runs",
                str(out / "runs.csv"),
                "--out",
                str(out / "ablation"),
                "--metrics",
                "recall@20",
            ]
        )
        == 0
    )
    assert cli_main(["report", "table", "baselines", "--runs", str(out / "runs.csv"), "--out", str(out / "base")]) == 0
    assert "+T-CE" in (out / "base.md").read_text() and "+GUIDER" in (out / "base.tex").read_text()
    for name in ("main.md", "main.tex", "main_significance.csv", "ablation.md", "ablation.tex"):
        assert (out / name).stat().st_size > 0
    assert (
        cli_main(
            [
                "report",
                "figure",
                "curves",
                "--runs",
                str(out / "runs.csv"),
                "--curves",
                str(out / "curves.csv"),
                "--out",
                str(out / "curves"),
            ]
        )
        == 0
    )
    assert (out / "curves.png").exists() and (out / "curves.pdf").exists()
    assert (
        cli_main(
            [
                "report",
                "summary",
                "--runs",
                str(out / "runs.csv"),
                "--metrics-out",
                str(out / "metrics.json"),
                "--noise-out",
                str(out / "noise.csv"),
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["n_runs"] == len(paths)
    # errors are reported, not raised: exit code 2
    assert cli_main(["report", "figure", "curves", "--runs", str(out / "runs.csv"), "--out", str(out / "x")]) == 2
    assert (
        cli_main(
            [
                "report",
                "collect",
                "--metrics",
                str(tmp_path / "nope/base/bpr/none/seed0/metrics.json"),
                "--out",
                str(out / "r.csv"),
            ]
        )
        == 2
    )


def _per_user(value: float) -> pd.DataFrame:
    users = np.arange(40)
    return pd.DataFrame({"userID": users, **{k: x + 0.002 * (users - 19.5) for k, x in metric_values(value).items()}})


def _significant_pair(tmp_path, plain_values, guided_values):
    """Four seeds of bpr plain vs GUIDER with varied differences, per-user files following the seeds."""
    paths = []
    for seed, (p, g) in enumerate(zip(plain_values, guided_values)):
        paths.append(write_run(tmp_path, "baby", "base", "bpr", "none", seed, metric_values(p), _per_user(p)))
        paths.append(write_run(tmp_path, "baby", "base", "bpr", "paper", seed, metric_values(g), _per_user(g)))
    return collect_runs(paths)


def test_a_significant_loss_is_not_marked_like_a_gain(tmp_path):
    """The probe's case: GUIDER significantly below plain got the gain's mark."""
    loss = _significant_pair(tmp_path / "loss", [0.060, 0.061, 0.0605, 0.0612], [0.050, 0.052, 0.049, 0.051])
    table, tests = tables.main_table(loss, ["recall@20"])
    marks = table.rows[1].cells[0].marks
    assert marks and set(marks) <= {tables.SEED_LOSS_MARK, tables.USER_LOSS_MARK} and "*" not in marks
    assert tests["diff_seeds"].iloc[0] < 0 and tables.direction(tests.iloc[0], 0.05) == "loss"
    gain = _significant_pair(tmp_path / "gain", [0.050, 0.052, 0.049, 0.051], [0.060, 0.061, 0.0605, 0.0612])
    table, tests = tables.main_table(gain, ["recall@20"])
    assert set(table.rows[1].cells[0].marks) <= {tables.SEED_MARK, tables.USER_MARK}
    assert tables.direction(tests.iloc[0], 0.05) == "gain"
    notes = render.markdown(table)
    assert "significantly better than plain" in notes and "significantly worse" in notes
    assert r"$^{\circ}$" in render.latex(tables.main_table(loss, ["recall@20"])[0], "tab:x")


def test_the_headline_counts_gains_losses_and_ties(study, tmp_path):
    from guider.report import headline

    runs, _ = study
    _, tests = tables.main_table(runs, METRICS)
    rows = headline.headline_rows(runs, tests, "recall@20", 0.05)
    assert len(rows) == 4 and set(rows["verdict"]) <= {"gain", "loss", "tie"}
    bpr = rows[(rows.dataset == "Baby") & (rows.backbone == "BPR")].iloc[0]
    assert bpr["plain"] == pytest.approx(0.051) and bpr["guider"] == pytest.approx(0.056)
    assert bpr["change"] == pytest.approx(0.005 / 0.051) and bpr["verdict"] == "gain"  # the per-user test
    sentence = headline.summary_sentence(rows, "recall@20", 0.05, 3)
    counts = rows["verdict"].value_counts()
    plural = {1: ""}
    gains = f"{counts.get('gain', 0)} significant gain{plural.get(counts.get('gain', 0), 's')}"
    losses = f"{counts.get('loss', 0)} significant loss{plural.get(counts.get('loss', 0), 'es')}"
    assert f"{gains}, {losses}" in sentence
    one_each = rows.assign(verdict=["gain", "loss", "tie", "tie"])
    assert "1 significant gain, 1 significant loss, 2 without" in headline.summary_sentence(
        one_each, "recall@20", 0.05, 3
    )
    none_yet = rows.assign(verdict=["tie"] * 4)
    assert "0 significant gains, 0 significant losses, 4 without" in headline.summary_sentence(
        none_yet, "recall@20", 0.05, 3
    )
    note = "a note: *not* `markup` <b> a_b |x|"
    text = headline.rst(rows, sentence, note)
    assert text.startswith("The answer\n") and ".. list-table::" in text and "BPR" in text
    from docutils.core import publish_parts

    html = publish_parts(text, writer="html")["html_body"]
    assert html.count("<table") == 2 and "significant gain" in html  # valid reStructuredText, two tables
    assert "AMSC lift" in html and "p users" in html
    assert "Recall&#64;20" in html and "mailto" not in html  # text, not a link docutils made of `R@20`
    assert "a note: *not* `markup` &lt;b&gt; a_b |x|" in html  # the note as written


def test_tables_are_also_html_pages(study, tmp_path):
    runs, _ = study
    table, _ = tables.main_table(runs, METRICS)
    page = render.html_from_markdown(render.markdown(table), "main table")
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr>") == 1 + len(table.rows)
    assert "<b>" in page and "<caption>" in page and "significantly better" in page
