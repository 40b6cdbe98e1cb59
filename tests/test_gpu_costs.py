"""benchmarks/gpu_costs.py: the one prepared GPU run, checked end to end on a tiny CPU catalogue."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from guider.cli import main
from guider.plan.costs import read_costs, read_packing, speedup

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks/gpu_costs.py"


def test_help_exits_0():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--time-budget" in result.stdout and "--packing-jobs" in result.stdout


@pytest.mark.slow
def test_tiny_cpu_run_writes_a_cost_table_plan_reads(tmp_path):
    # vbpr too: config/test.yaml trains bpr and vbpr, and plan refuses a backbone without a row
    command = [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--steps", "2", "--warmup", "1"]
    command += ["--backbones", "bpr,lightgcn,vbpr", "--packing-backbones", "lightgcn", "--packing-jobs", "1,2"]
    result = subprocess.run([*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [costs_csv] = tmp_path.glob("costs_cpu_*.csv")
    costs = read_costs(costs_csv)
    assert {(b, m) for b, m in zip(costs["backbone"], costs["method"])} == {
        (b, m) for b in ("bpr", "lightgcn", "vbpr") for m in ("none", "paper")
    }
    assert costs["device"].str.startswith("cpu").all() and (costs["seconds_per_epoch"] > 0).all()
    assert (costs[["users", "items", "train_rows"]].iloc[0] > 0).all() and (costs["steps_timed"] >= 1).all()
    assert costs["dataset"].str.contains("random features 384 text / 4096 image").all()
    [packing_csv] = tmp_path.glob("packing_cpu_*.csv")
    packing = read_packing(packing_csv)
    assert sorted(packing["jobs"]) == [1, 2] and speedup(packing, 2) > 0
    log = (tmp_path / "gpu_costs.log").read_text()
    assert "torch" in log and "CUDA" in log and "time budget" in log
    assert main(["plan", "--configfile", str(ROOT / "config/test.yaml"), "--costs", str(costs_csv)]) == 0


def test_missing_packages_are_named_on_one_line(tmp_path):
    """With torch hidden, the script names it (and nothing else is tried) and exits 2."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n            raise ImportError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = {"PYTHONPATH": str(hide), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["gpu_costs.py: missing: torch (pip install torch)"]


def test_a_short_budget_still_leaves_valid_csvs(tmp_path):
    """Nothing fits a 1-second budget: the run stops, the tables are valid (headers only), the log says so."""
    command = [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--backbones", "bpr", "--time-budget", "1"]
    result = subprocess.run([*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [costs_csv] = tmp_path.glob("costs_cpu_*.csv")
    assert list(pd.read_csv(costs_csv).columns[:5]) == [
        "backbone",
        "method",
        "device",
        "seconds_per_epoch",
        "seconds_per_eval",
    ]
    assert "time budget ran out" in (tmp_path / "gpu_costs.log").read_text()
