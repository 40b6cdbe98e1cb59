"""`guider plan`: trainings counted from the workflow's dry run, costed from a cost table."""

import json
from pathlib import Path

import pandas as pd
import pytest

from guider import plan
from guider.cli import main

ROOT = Path(__file__).resolve().parents[1]

LISTING = """
rule train:
    Shell command: guider train --data results/data/baby/base --backbone bpr --out results/runs/baby/base/bpr/none/seed0 --method none --seed 0 --device auto --epochs 40 --resume --no-progress > x.log 2>&1
    Shell command: guider train --data results/data/baby/add0.2 --backbone bpr --out results/runs/baby/add0.2/bpr/no_amsc/seed1 --method no_amsc --seed 1 --device auto --resume
    guider train --data results/data/sports/base --backbone lightgcn --out results/tuning/sports/lightgcn/paper/point3 --method paper --seed 0 --set kd.weight=0.2
"""  # noqa: E501

COSTS = pd.DataFrame(
    {
        "backbone": ["bpr", "bpr", "lightgcn"],
        "method": ["none", "paper", "none"],
        "device": ["cuda"] * 3,
        "seconds_per_epoch": [10.0, 30.0, 20.0],
        "seconds_per_eval": [2.0, 2.0, 4.0],
    }
)


def test_parse_dry_run_reads_each_training_command():
    runs = plan.parse_dry_run(LISTING)
    assert runs == [
        plan.PlannedRun("baby", "bpr", "none", 40, False),
        plan.PlannedRun("baby", "bpr", "no_amsc", None, False),
        plan.PlannedRun("sports", "lightgcn", "paper", None, True),
    ]


def test_project_costs_each_run_by_hand():
    runs = plan.parse_dry_run(LISTING)
    table = plan.project(runs, COSTS, {("lightgcn", "paper"): 50.0}, assume_epochs=100).set_index("method")
    # bpr/none: capped at its --epochs 40: 40 x (10 + 2) + 2 seconds
    assert table.loc["none", "hours"] == pytest.approx((40 * 12 + 2) / 3600)
    # an ablation of GUIDER is costed as GUIDER: 100 assumed epochs x (30 + 2) + 2
    assert table.loc["no_amsc", "costed_as"] == "paper" and table.loc["no_amsc", "epochs_from"] == "assumed"
    assert table.loc["no_amsc", "hours"] == pytest.approx((100 * 32 + 2) / 3600)
    # lightgcn has no GUIDER row: plain's, with the epochs of finished runs
    paper = table.loc["paper"]
    assert (paper["costed_as"], paper["epochs_from"], paper["grid_points"]) == ("none", "finished runs", 1)
    assert paper["hours"] == pytest.approx((50 * 24 + 4) / 3600)
    with pytest.raises(ValueError, match="no row for backbone 'vbpr'"):
        plan.project([plan.PlannedRun("baby", "vbpr", "none", None, False)], COSTS, {}, 10)


def test_wall_time_gains_until_the_card_is_busy():
    assert [plan.wall_hours(100.0, 1, k, 0.25) for k in (1, 4, 8)] == [100.0, 25.0, 25.0]
    assert plan.wall_hours(100.0, 4, 2, 0.25) == 12.5
    with pytest.raises(ValueError, match="GPU share"):
        plan.wall_hours(1.0, 1, 1, 0.0)


def test_finished_runs_give_the_epochs(tmp_path):
    for k, epochs in enumerate((30, 50)):
        run = tmp_path / "runs" / f"r{k}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"backbone": "bpr", "method": "none", "epochs_run": epochs}))
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "metrics.json").write_text("{")
    assert plan.finished_epochs(tmp_path) == {("bpr", "none"): 40.0}


def test_plan_command_on_the_test_config(tmp_path, capsys):
    costs = pd.DataFrame(
        {
            "backbone": ["bpr", "bpr", "vbpr", "vbpr"],
            "method": ["none", "paper"] * 2,
            "device": ["cpu"] * 4,
            "seconds_per_epoch": [100.0, 300.0, 200.0, 600.0],
            "seconds_per_eval": [50.0] * 4,
        }
    )
    costs.to_csv(tmp_path / "costs.csv", index=False)
    args = ["plan", "--configfile", str(ROOT / "config/test.yaml"), "--costs", str(tmp_path / "costs.csv")]
    assert main([*args, "--root", str(ROOT), "--results", str(tmp_path / "none"), "--jobs-per-gpu", "1", "4"]) == 0
    out = capsys.readouterr().out
    assert "22 trainings: 18 study runs + 4 tuning grid points" in out
    # a run: 2 epochs (the config's --epochs) x (s/epoch + s/eval) + s/eval
    bpr_plain = 3 * 2 + 2 + 2  # none on base, add0.3, modality0.3 x 2 seeds, 2 grid points, tce x 2 (as plain)
    bpr_guider = 3 * 2 + 2  # paper on the three data x 2 seeds, 2 grid points
    seconds = bpr_plain * (2 * 150 + 50) + bpr_guider * (2 * 350 + 50) + 2 * (2 * 250 + 50) + 2 * (2 * 650 + 50)
    total = float(out.split("total: ")[1].split(" hours")[0].replace(",", ""))
    assert total == pytest.approx(seconds / 3600, abs=0.006)  # printed to 2 decimals
    wall = float(out.split("1 GPU(s) x 4 job(s) per GPU: ")[1].split(" h")[0])
    assert wall == pytest.approx(seconds / 3600 / 4, abs=0.006)
    assert "1 GPU(s) x 4 job(s) per GPU" in out
    (tmp_path / "bad.csv").write_text("backbone,seconds\nbpr,1\n")
    assert main([*args[:-1], str(tmp_path / "bad.csv"), "--root", str(ROOT)]) == 2
