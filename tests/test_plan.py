"""`guider plan`: trainings from the study, costed from a cost table scaled to each dataset."""

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml

from guider import plan
from guider.cli import main
from guider.study import Study

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / "config/test.yaml"
TINY = {"users": 80, "items": 120, "train_rows": 800}  # config/test.yaml's dataset (small preset's density)


def cost_table(device: str = "cpu (2 threads)", sizes: dict | None = TINY, **extra) -> pd.DataFrame:
    """bpr and vbpr, plain and GUIDER; measured at `sizes` (the test config's dataset by default)."""
    table = pd.DataFrame(
        {
            "backbone": ["bpr", "bpr", "vbpr", "vbpr"],
            "method": ["none", "paper"] * 2,
            "device": [device] * 4,
            "seconds_per_epoch": [100.0, 300.0, 200.0, 600.0],
            "seconds_per_eval": [50.0] * 4,
            **(sizes or {}),
            **extra,
        }
    )
    return table


def write(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


def run_plan(capsys, costs: Path, root: Path, *extra: str, config: Path = TEST_CONFIG) -> tuple[int, str]:
    code = main(["plan", "--configfile", str(config), "--costs", str(costs), "--root", str(root), *extra])
    return code, capsys.readouterr().out


def number_after(text: str, marker: str) -> float:
    return float(text.split(marker)[1].split()[0].replace(",", ""))


# config/test.yaml at 2 epochs (its train.epochs): epochs x (s/epoch + s/eval) + s/eval per run;
# bpr none: 3 data x 2 seeds + 2 grid points, and tce x 2 costed as plain; bpr paper: 6 + 2 points
TEST_SECONDS = 10 * (2 * 150 + 50) + 8 * (2 * 350 + 50) + 2 * (2 * 250 + 50) + 2 * (2 * 650 + 50)


def test_counts_are_the_studys(tmp_path, capsys):
    study = Study.from_file(TEST_CONFIG)
    runs = study.runs()
    points = sum(r.is_tuning for r in runs)
    code, out = run_plan(capsys, write(cost_table(), tmp_path / "c.csv"), tmp_path)
    assert code == 0
    assert f"{len(runs)} trainings: {len(runs) - points} study runs + {points} tuning grid points" in out
    assert "22 trainings: 18 study runs + 4 tuning grid points" in out
    rules = out.split("jobs per rule")[1].splitlines()[0]
    assert all(f"{rule} {n}" in rules for rule, n in study.counts().items())
    assert number_after(out, "total: ") == pytest.approx(TEST_SECONDS / 3600, abs=6e-4)
    assert "CPU hours (one job on cpu (2 threads))" in out


def test_a_cpu_table_gives_no_gpu_estimate(tmp_path, capsys):
    _, out = run_plan(capsys, write(cost_table(), tmp_path / "c.csv"), tmp_path)
    assert "no GPU estimate: this cost table is CPU-measured; measure one with benchmarks/gpu_costs.py" in out
    assert "GPU hours" not in out and "wall time" not in out


def test_assumed_epochs_are_printed_and_capped(tmp_path, capsys):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    config["train"]["epochs"] = None  # the trainer's default: 1000
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    costs = write(cost_table(), tmp_path / "c.csv")
    code, out = run_plan(capsys, costs, tmp_path, "--assume-epochs", "60", config=tmp_path / "config.yaml")
    assert code == 0 and "epochs per run: 60 assumed (--assume-epochs)" in out and "capped" not in out
    seconds = 10 * (60 * 150 + 50) + 8 * (60 * 350 + 50) + 2 * (60 * 250 + 50) + 2 * (60 * 650 + 50)
    assert number_after(out, "total: ") == pytest.approx(seconds / 3600, abs=6e-4)
    _, out = run_plan(capsys, costs, tmp_path)  # config/test.yaml: train.epochs 2
    assert "epochs per run: 100 assumed (--assume-epochs), capped at train.epochs 2" in out


def test_dataset_size_scales_the_costs(tmp_path):
    row = cost_table().iloc[0]  # bpr none, measured at 800 train rows, 80 x 120
    small = plan.Size(80, 120, 800, "test")
    double = plan.Size(80, 120, 1600, "test")
    assert plan.run_seconds(row, small, 10) == 10 * 150 + 50
    assert plan.run_seconds(row, double, 10) == 10 * (2 * 100 + 50) + 50  # twice the epoch time, same eval
    wide = plan.Size(160, 240, 800, "test")
    assert plan.run_seconds(row, wide, 10) == 10 * (100 + 4 * 50) + 4 * 50  # evaluation: users x items
    assert plan.scale_factors(double, small) == (2.0, 1.0)
    baby = cost_table(sizes=None).iloc[0]  # no size columns: measured at the Baby size
    assert plan.reference_size(baby) == plan.BABY and plan.BABY.train_rows == 121_103
    assert plan.run_seconds(baby, plan.Size(19_445, 7_050, 2 * 121_103, "x"), 1) == 2 * 100 + 50 + 50


def test_dataset_sizes_come_from_the_prepared_folder_registry_or_preset(tmp_path):
    study = Study.from_file(TEST_CONFIG)
    assert plan.dataset_size(study, "tiny", tmp_path) == plan.Size(80, 120, 800, "synthetic preset small")
    folder = tmp_path / "results/data/tiny/base"
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"statistics": {"users": 90, "items": 100, "interactions": 1000}}))
    size = plan.dataset_size(study, "tiny", tmp_path)  # no train count: 0.8 x interactions
    assert (size.users, size.items, size.train_rows) == (90, 100, 800)
    (folder / "dataset.json").write_text(json.dumps({"statistics": {"users": 90, "items": 100, "train": 777}}))
    size = plan.dataset_size(study, "tiny", tmp_path)
    assert (size.users, size.items, size.train_rows) == (90, 100, 777)
    paper = Study.from_file(ROOT / "config/config.yaml")
    assert plan.dataset_size(paper, "sports", tmp_path) == plan.Size(35_598, 18_357, 237_070, "registry expected")


def test_the_table_says_when_it_assumes_the_baby_size(tmp_path, capsys):
    _, out = run_plan(capsys, write(cost_table(sizes=None), tmp_path / "c.csv"), tmp_path)
    assert "it records no dataset size: assumed measured at the Baby size (19,445 users x 7,050 items" in out
    assert "tiny: 80 users x 120 items, 800 train rows (synthetic preset small): s/epoch x0.00661" in out


def finish(root: Path, folder: str, epochs: int, benchmark: str | None = None, seconds: float = 0.0) -> None:
    """A finished run: its metrics.json, and a Snakemake benchmark file."""
    (root / folder).mkdir(parents=True)
    (root / folder / "metrics.json").write_text(json.dumps({"backbone": "bpr", "method": "none", "epochs_run": epochs}))
    if benchmark:
        (root / benchmark).parent.mkdir(parents=True, exist_ok=True)
        (root / benchmark).write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t1.0\n")


def test_finished_runs_of_this_study_only_give_epochs_and_measured_hours(tmp_path, capsys):
    finish(
        tmp_path,
        "results/runs/tiny/base/bpr/none/seed0",
        30,
        "results/benchmarks/train/tiny/base/bpr/none/seed0.tsv",
        7200,
    )
    finish(
        tmp_path,
        "results/runs/other/base/bpr/none/seed0",
        999,
        "results/benchmarks/train/other/base/bpr/none/seed0.tsv",
        9,
    )
    finish(tmp_path, "results/runs/tiny/base/bpr/none/seed7", 999)  # a seed the study does not have
    finish(tmp_path, "results/runs/tiny/base/vbpr/none/seed1", 999)  # another demo's folder name, not a run here
    code, out = run_plan(capsys, write(cost_table(), tmp_path / "c.csv"), tmp_path)
    assert code == 0
    assert "finished: 2 runs, 2.000 h measured (1 with a benchmark file" in out
    bpr_none = next(line for line in out.splitlines() if line.startswith("bpr        none"))
    assert bpr_none.split()[4:6] == ["30.0", "finished"]
    # measured / projected: 7200 s / (30 x (100 + 50) + 50)
    assert f"measured / projected: {7200 / 4550:.2f} over 1 finished runs" in out
    assert bpr_none.split()[-1] == f"{7200 / 4550:.2f}"
    vbpr_none = next(line for line in out.splitlines() if line.startswith("vbpr       none"))
    assert vbpr_none.split()[4:6] == ["999.0", "finished"]  # seed1 is a study run of vbpr/none


def test_remaining_leaves_out_finished_runs_and_other_configs_count_nothing(tmp_path, capsys):
    finish(tmp_path, "results/runs/tiny/base/bpr/none/seed0", 2)
    finish(tmp_path, "results/runs/synthetic/base/bpr/none/seed0", 2)  # the demo's dataset
    costs = write(cost_table(), tmp_path / "c.csv")
    _, out = run_plan(capsys, costs, tmp_path, "--remaining")
    assert "21 trainings left (--remaining: no metrics.json yet): 17 study runs + 4 tuning grid points" in out
    assert "finished: 1 runs" in out
    baby = ROOT / "benchmarks/costs_cpu_baby.csv"
    code, out = run_plan(capsys, baby, tmp_path, config=ROOT / "config/config.yaml")
    assert code == 0 and "finished: 0 runs, 0.000 h measured" in out


def test_gpu_table_wall_time_uses_the_measured_packing(tmp_path, capsys):
    card = "NVIDIA H100 80GB HBM3"
    costs = write(
        cost_table("cuda", card=[card] * 4, peak_memory_gib=[1.5, 2.5, 1.0, 3.0]), tmp_path / "costs_gpu_x.csv"
    )
    _, out = run_plan(capsys, costs, tmp_path, "--gpus", "2")
    hours = TEST_SECONDS / 3600
    assert f"total: {hours:,.3f} GPU hours (one job on {card})" in out and "CPU" not in out
    assert "peak GPU memory per job (at the table's dataset size): up to 3.00 GiB (vbpr/paper)" in out
    assert f"wall time on 2 GPU(s) x 1 job per GPU: {hours / 2:,.3f} h" in out and "no packing measured" in out
    (tmp_path / "packing_gpu_x.csv").write_text("backbone,jobs,steps_per_second,speedup\n")  # nothing measured
    assert "no packing measured" in run_plan(capsys, costs, tmp_path)[1]
    packing = pd.DataFrame(
        {"backbone": ["a"] * 3 + ["b"] * 3, "jobs": [1, 2, 4] * 2, "steps_per_second": [10, 18, 30, 20, 32, 50]}
    )
    write(packing, tmp_path / "packing_gpu_NVIDIA_H100_80GB_HBM3.csv")  # found by the card's name
    _, out = run_plan(capsys, costs, tmp_path, "--gpus", "2")
    for jobs, gain in ((1, 1.0), (2, (1.8 + 1.6) / 2), (4, (3.0 + 2.5) / 2)):
        assert f"2 GPU(s) x {jobs} job(s) per GPU: {hours / (2 * gain):,.3f} h" in out
        assert f"measured speedup {gain:.2f}x" in out
    assert main(["plan", "--configfile", str(TEST_CONFIG), "--costs", str(costs), "--jobs-per-gpu", "8"]) == 2
    with pytest.raises(ValueError, match=r"8 jobs per GPU not measured \(measured: 1, 2, 4\)"):
        plan.speedup(plan.read_packing(tmp_path / "packing_gpu_NVIDIA_H100_80GB_HBM3.csv"), 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"seconds_per_epoch": [100.0, -1.0, 1.0, 1.0]},
            "line 3: seconds_per_epoch is -1.0; costs are finite seconds >= 0",
        ),
        ({"seconds_per_eval": [1.0, 1.0, float("nan"), 1.0]}, "line 4: seconds_per_eval is nan"),
        ({"seconds_per_eval": ["1", "x", "1", "1"]}, "line 3: seconds_per_eval is 'x'"),
        ({"train_rows": [800, 0, 800, 800]}, "line 3: train_rows is 0; train_rows values are finite numbers > 0"),
        ({"device": ["cpu", "cuda", "cpu", "cpu"]}, "mixes CPU rows (line 2) and GPU rows (line 3)"),
        ({"device": ["tpu"] * 4}, "line 2: device 'tpu' is neither"),
    ],
)
def test_bad_cost_values_are_one_line_errors(tmp_path, caplog, change, message):
    table = cost_table()
    for column, values in change.items():
        table[column] = values
    costs = write(table, tmp_path / "c.csv")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.read_costs(costs)
    with caplog.at_level(logging.ERROR, logger="guider"):
        assert main(["plan", "--configfile", str(TEST_CONFIG), "--costs", str(costs), "--root", str(tmp_path)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and message in errors[-1] and "\n" not in errors[-1]


def test_other_failures_are_one_line_errors(tmp_path):
    args = ["plan", "--costs", str(write(cost_table(), tmp_path / "c.csv")), "--root", str(tmp_path)]
    bad = yaml.safe_load(TEST_CONFIG.read_text())
    bad["seeds"] = "zero"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="config seeds"):
        Study.from_file(tmp_path / "bad.yaml")
    assert main([*args, "--configfile", str(tmp_path / "bad.yaml")]) == 2
    with pytest.raises(ValueError, match="size columns come together"):
        plan.read_costs(write(cost_table().assign(users=1).drop(columns=["items"]), tmp_path / "partial.csv"))
    with pytest.raises(ValueError, match="no row for backbone 'vbpr'"):
        plan.cost_row(cost_table().iloc[:2], "vbpr", "none")
    assert main([*args, "--configfile", str(TEST_CONFIG), "--assume-epochs", "0"]) == 2


def test_a_method_without_its_row_is_costed_by_its_family():
    table = cost_table()
    assert plan.cost_row(table, "bpr", "no_amsc")[1] == "paper"  # a GUIDER ablation distils from a teacher
    assert plan.cost_row(table, "bpr", "tce")[1] == "none"
    assert plan.cost_row(table.iloc[[0]], "bpr", "paper")[1] == "none"


def test_the_dry_run_parser_is_gone():
    words = ("parse_" + "dry_run", "parse_" + "run_path")
    for path in (ROOT / "guider").rglob("*.py"):
        text = path.read_text()
        assert not any(word in text for word in words), path
