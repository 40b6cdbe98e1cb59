"""The benchmark scripts run (on tiny data): they are not timed here, only kept working."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from conftest import make_dataset

from guider.data import save_dataset

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, monkeypatch):
    """The benchmark as an importable module (bench_epoch's worker processes import it by name)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_dataset(make_dataset(), tmp_path_factory.mktemp("d") / "tiny")


@pytest.mark.slow
def test_bench_epoch_prints_a_row_per_backbone_with_its_peak_memory(folder, capsys, monkeypatch):
    script("bench_epoch", monkeypatch).main(
        ["--data", str(folder), "--epochs", "1", "--backbones", "bpr", "freedom", "--threads", "1"]
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0] for row in rows] == ["bpr", "freedom"]
    assert all(len(row) == 11 and float(row[6]) > 100 for row in rows)  # peak RSS in MB (torch alone > 100)
    assert all(row[7] == "nan" for row in rows)  # no GPU memory on the CPU
    assert all(row[-1] == "True" for row in rows)  # the replaced evaluation gives the same per-user values


def test_bench_guider_times_plain_and_paper(folder, capsys, monkeypatch, tmp_path):
    sets = ["--set", "amsc.knn_k=3", "--set", "kd.candidates=12", "--set", "kd.teacher_top=4"]
    costs = ["--costs-out", str(tmp_path / "costs.csv")]
    script("bench_guider", monkeypatch).main(
        ["--data", str(folder), "--backbones", "bpr", "--epochs", "1", "--threads", "1", "--before", *sets, *costs]
    )
    out = capsys.readouterr().out
    assert "max ratio" in out
    row = next(line.split() for line in out.splitlines() if line.startswith("bpr "))
    ratio, kd_share, before_ratio = float(row[3]), float(row[4].rstrip("%")), float(row[5])
    assert ratio > 1 and before_ratio > 1 and kd_share > 0  # GUIDER adds work; its KD costs something
    from guider.plan import read_costs  # the cost table guider plan reads: the printed seconds

    table = read_costs(tmp_path / "costs.csv").set_index("method")
    assert table.loc["none", "seconds_per_epoch"] == pytest.approx(float(row[1]), abs=5e-4)
    assert table.loc["paper", "seconds_per_epoch"] == pytest.approx(float(row[2]), abs=5e-4)
    assert (table["backbone"] == "bpr").all() and (table["seconds_per_eval"] > 0).all()


def test_bench_sinkhorn_puts_each_solver_against_pots_converged_solve(folder, capsys, monkeypatch):
    sets = ["--set", "amsc.knn_k=3", "--set", "kd.candidates=12", "--set", "kd.teacher_top=4"]
    args = ["--data", str(folder), "--points", "bpr:1,2", "--batches", "2", "--threads", "1"]
    script("bench_sinkhorn", monkeypatch).main([*args, "--reference-iters", "20000", *sets])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("bpr e")]
    assert len(rows) == 2 * 4  # two captured epochs x the four solvers
    newton = [line for line in rows if "newton (default)" in line]
    for line in newton:
        cos_mean, norms = line.split()[-4], line.split()[-2]
        low, high = (float(x) for x in norms.split("-"))
        assert float(cos_mean) >= 0.99 and 0.95 <= low <= high <= 1.05


@pytest.mark.slow
def test_bench_epoch_steps_extrapolates_a_partial_epoch(folder, capsys, monkeypatch, tmp_path):
    bench = script("bench_epoch", monkeypatch)
    bench.main(["--data", str(folder), "--epochs", "1", "--steps", "1", "--backbones", "bpr", "--threads", "1"])
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[0] == "bpr" and row[-1] == "True"
    from guider.data import load_dataset

    trainer = script("bench_guider", monkeypatch).trainer_for(
        load_dataset(folder), "bpr", "none", ["train.batch_size=4"], tmp_path / "run"
    )
    n_batches = -(-len(trainer.inputs.train_users) // 4)
    steps = []
    real_step = trainer._step
    trainer._step = lambda *args: steps.append(1) or real_step(*args)
    assert bench.time_epochs(trainer, 1, steps=1) > 0 and n_batches > 1
    assert len(steps) == 1  # one batch ran; the other n_batches - 1 were extrapolated


def test_mmrec_graph_files_match_a_naive_count(tmp_path, monkeypatch):
    """bench_vs_mmrec's fixtures for MMRec's loaders: each user's co-occurring users with their
    shared-item counts (most shared first, ties to the lower id), each item's top-2 items
    sharing >= 2 users (an edge set: their order does not matter to MMRec), in MMRec's
    {id: [neighbours, weights]} pickled-dict format."""
    import numpy as np

    from guider.data import TRAIN

    ds = make_dataset()
    train = ds.matrix(TRAIN)
    script("bench_vs_mmrec", monkeypatch).write_graph_files(tmp_path, train)
    users = np.load(tmp_path / "user_graph_dict.npy", allow_pickle=True).item()  # our own test fixture
    items = np.load(tmp_path / "item_graph_dict_2.npy", allow_pickle=True).item()
    dense = train.toarray().astype(int)
    shared = dense @ dense.T
    for u in range(ds.n_users):
        others = [(-int(shared[u, v]), v) for v in range(ds.n_users) if v != u and shared[u, v] > 0]
        expected = sorted(others)[:200]
        assert users[u] == [[v for _, v in expected], [float(-c) for c, _ in expected]]
    co = dense.T @ dense
    for i in range(ds.n_items):
        others = sorted((-int(co[i, j]), j) for j in range(ds.n_items) if j != i and co[i, j] > 0)[:2]
        strong = [j for c, j in others if -c >= 2]
        neighbours, weights = items.get(i, [[], []])
        assert sorted(neighbours) == sorted(strong) and weights == [1] * len(strong)  # MMRec reads them as edges
