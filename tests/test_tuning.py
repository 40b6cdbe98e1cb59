"""Grids chosen on the validation split (guider.tuning.grids, `guider tune`, `guider train --tuned`,
the selection table)."""

import json

import pytest
from conftest import make_dataset

from guider import tuning
from guider.cli import main
from guider.data import save_dataset
from guider.models import get_class
from guider.report import tuning_table


def test_grid_points_are_the_product_in_key_order_and_a_cap_keeps_that_order():
    grid = {"model.a": (1, 2, 3), "train.b": (0.1, 0.2)}
    points = tuning.grid_points(grid)
    assert points == [{"model.a": a, "train.b": b} for a in (1, 2, 3) for b in (0.1, 0.2)]
    capped = tuning.grid_points(grid, max_points=3, subset_seed=5)
    assert len(capped) == 3 and capped == tuning.grid_points(grid, max_points=3, subset_seed=5)
    assert [points.index(p) for p in capped] == sorted(points.index(p) for p in capped)  # grid order kept
    assert capped != tuning.grid_points(grid, max_points=3, subset_seed=6) or len(points) == 3
    assert tuning.grid_points(grid, max_points=10) == points  # a cap above the grid size changes nothing
    assert tuning.grid_points({}) == [{}]  # no grid: the one configured point
    with pytest.raises(ValueError, match="model.a: no values"):
        tuning.grid_points({"model.a": ()})


def test_recorded_grids_and_who_inherits():
    assert tuning.grid_for("lightgcn", "none") == dict(get_class("lightgcn").Config.grid)
    assert set(tuning.grid_for("lightgcn", "paper")) == {"kd.weight", "amsc.tau", "dbpr.false_weight"}
    assert tuning.grid_for("lightgcn", "no_amsc") == {}  # an ablation does not inherit GUIDER's grid
    assert tuning.grid_for("lightgcn", "tce") == {}
    mine = {"lightgcn": {"model.reg_weight": [0.1]}}
    assert tuning.grid_for("lightgcn", "none", backbone_grids=mine) == {"model.reg_weight": (0.1,)}
    assert tuning.grid_for("bpr", "none", backbone_grids=mine) == dict(get_class("bpr").Config.grid)
    assert tuning.grid_for("bpr", "paper", method_grids={"paper": {"kd.weight": [1.0]}}) == {"kd.weight": (1.0,)}


def test_first_best_takes_the_earliest_tie_and_skips_nan():
    assert tuning.first_best([0.1, 0.3, 0.3, 0.2]) == 1
    assert tuning.first_best([float("nan"), 0.2, 0.1]) == 1
    with pytest.raises(ValueError, match="no grid point"):
        tuning.first_best([float("nan")])


def result(valid, test):
    return {"valid": {"recall@20": valid}, "test": {"recall@20": test}, "best_epoch": 3}


def test_select_chooses_on_valid_and_measures_the_test_selection_optimism():
    grid = {"model.reg_weight": (0.1, 0.01, 0.001)}
    points = tuning.grid_points(grid)
    results = [result(0.20, 0.18), result(0.22, 0.19), result(0.22, 0.21)]  # valid tie: the earlier point wins
    record = tuning.select(grid, points, results, {"model.n_layers": 2}, dataset="d", backbone="b", method="paper")
    assert record["chosen"]["index"] == 1 and record["test_selected"]["index"] == 2
    assert record["optimism"] == pytest.approx(0.21 - 0.19)
    assert record["chosen"]["settings"] == {"model.n_layers": 2, "model.reg_weight": 0.01}
    assert (record["dataset"], record["method"], record["metric"]) == ("d", "paper", "recall@20")
    assert len(record["points"]) == 3 and record["grid"] == {"model.reg_weight": [0.1, 0.01, 0.001]}
    with pytest.raises(ValueError, match="3 grid points but 2 trained runs"):
        tuning.select(grid, points, results[:2])


def test_selection_table_lists_both_choices_and_the_optimism():
    grid = {"train.lr": (0.001, 0.005)}
    record = tuning.select(grid, tuning.grid_points(grid), [result(0.30, 0.25), result(0.29, 0.27)],
                           dataset="baby", backbone="lightgcn", method="none")  # fmt: skip
    same = tuning.select(grid, tuning.grid_points(grid), [result(0.30, 0.28), result(0.29, 0.27)],
                         dataset="baby", backbone="lightgcn", method="paper")  # fmt: skip
    inherited = tuning.inherited_record(record, dataset="baby", backbone="lightgcn", method="tce")
    text = tuning_table.markdown([same, inherited, record])
    rows = [line.rstrip(" |") for line in text.splitlines() if line.startswith("| Baby")]
    assert rows[0].split(" | ")[1:] == [
        "LightGCN", "plain", "2", "train.lr=0.001", "0.3000", "0.2500", "train.lr=0.005", "0.2700", "+0.0200 (+8.0%)",
    ]  # fmt: skip
    assert rows[1].split(" | ")[2] == "GUIDER" and rows[1].split(" | ")[7] == "same" and "+0.0000" in rows[1]
    assert len(rows) == 2  # the inheriting method has no row
    assert r"+8.0\%" in tuning_table.latex([record])
    with pytest.raises(ValueError, match="no tuning record with grid points"):
        tuning_table.markdown([inherited])


def test_tune_and_train_the_chosen_point_from_the_command_line(tmp_path, capsys, caplog):
    data = save_dataset(make_dataset(n_users=40, n_items=30, per_user=8), tmp_path / "data")
    grid = {"model.reg_weight": [0.01, 0.0001]}
    assert main(["tune", "points", "--backbone", "bpr", "--grid", json.dumps(grid)]) == 0
    points = json.loads(capsys.readouterr().out)
    assert points == [{"model.reg_weight": 0.01}, {"model.reg_weight": 0.0001}]
    runs = []
    for k, point in enumerate(points):
        run = tmp_path / f"point{k}"
        sets = [arg for pair in tuning.point_sets(point) for arg in ("--set", pair)]
        assert main(["train", "--data", str(data), "--backbone", "bpr", "--out", str(run), "--epochs", "2",
                     "--device", "cpu", "--no-progress", *sets]) == 0  # fmt: skip
        runs.append(str(run))
    record_path = tmp_path / "none.json"
    select = ["tune", "select", "--dataset", "toy", "--backbone", "bpr", "--grid", json.dumps(grid)]
    assert main([*select, "--runs", *runs, "--out", str(record_path)]) == 0
    record = json.loads(record_path.read_text())
    valid = [json.loads((tmp_path / f"point{k}/metrics.json").read_text())["valid"]["recall@20"] for k in (0, 1)]
    assert record["chosen"]["index"] == tuning.first_best(valid)
    assert "chosen on valid" in capsys.readouterr().out
    final = tmp_path / "final"
    assert main(["train", "--data", str(data), "--backbone", "bpr", "--out", str(final), "--epochs", "1",
                 "--device", "cpu", "--no-progress", "--set", "model.reg_weight=0.5",
                 "--tuned", str(record_path)]) == 0  # fmt: skip
    trained = json.loads((final / "config.json").read_text())["model"]["reg_weight"]
    assert trained == record["chosen"]["point"]["model.reg_weight"]  # --tuned wins over --set
    # a run folder that trained other settings than its grid point is refused
    assert main([*select, "--runs", *reversed(runs), "--out", str(tmp_path / "x.json")]) == 2
    assert "grid point says model.reg_weight=0.01 but the run trained model.reg_weight=0.0001" in caplog.text


def test_a_method_without_a_grid_inherits_and_bad_records_are_named(tmp_path, capsys):
    plain = tuning.select({"train.lr": (0.001,)}, [{"train.lr": 0.001}], [result(0.3, 0.2)])
    tuning.write_record(plain, tmp_path / "none.json")
    out = tmp_path / "tce.json"
    args = ["tune", "select", "--dataset", "d", "--backbone", "bpr", "--method", "tce"]
    assert main([*args, "--inherit", str(tmp_path / "none.json"), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["chosen"]["settings"] == {"train.lr": 0.001} and record["points"] == [] and record["optimism"] is None
    assert main([*args, "--out", str(out)]) == 2  # neither a grid nor a record to inherit
    assert main(["tune", "points", "--backbone", "bpr", "--method", "tce"]) == 0
    assert main(["tune", "points", "--backbone", "bpr", "--grid", "{}"]) == 0  # plain without a grid: one point
    assert capsys.readouterr().out.split("\n")[-3:-1] == ["[]", "[{}]"]
    (tmp_path / "bad.json").write_text(json.dumps({"chosen": {}}))
    with pytest.raises(ValueError, match="bad.json: not a tuning record"):
        tuning.tuned_sets(tmp_path / "bad.json")
