"""What a run tells its user: one line per epoch, the end line, a progress bar that reads the
device at most once per second, and provenance in every metrics.json."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from conftest import make_dataset

import guider
from guider.cli import main as cli
from guider.data import save_dataset
from guider.engine import feedback


def test_an_epoch_line_has_the_epoch_of_n_the_loss_time_metric_best_and_time_left():
    row = {"epoch": 11, "train_loss": 0.23456, "train_seconds": 2.1, "eval_seconds": 0.4, "valid_recall@20": 0.0812}
    line = feedback.epoch_line(row, 300, "recall@20", (0.083, 9), [2.5, 2.5])
    assert line.startswith("epoch 12/300: loss 0.2346, 2.1 s + valid 0.4 s")
    assert "valid recall@20 0.0812 (best 0.0830 at 10)" in line and line.endswith("at most 12 min left")
    last = feedback.epoch_line({**row, "epoch": 299}, 300, "recall@20", (0.083, 9), [2.5])
    assert "left" not in last


def test_the_end_line_names_the_run_folder_the_best_epoch_and_the_metric():
    line = feedback.end_line("runs/lgn", {"best_epoch": 90, "epochs_run": 112, "test": {"recall@20": 0.0762}})
    assert line == "runs/lgn: best epoch 91 of 112; test recall@20 0.0762 (runs/lgn/metrics.json)"


def test_the_bar_reads_the_loss_at_most_once_per_second(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(feedback.time, "monotonic", lambda: clock["t"])
    reads = {"n": 0}
    original = torch.Tensor.__float__

    def counted(self):
        reads["n"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counted)
    bar = feedback.BatchBar(100, 0, 10, enabled=True)
    for step in range(100):
        clock["t"] = step * 0.05  # 20 batches per second
        bar.step(torch.tensor(0.5))
    bar.close()
    assert reads["n"] == 4  # at 1, 2, 3 and 4 seconds
    reads["n"] = 0
    quiet = feedback.BatchBar(100, 0, 10, enabled=False)
    for step in range(100):
        clock["t"] = step * 1.0
        quiet.step(torch.tensor(0.5))
    assert reads["n"] == 0


def test_a_run_records_its_provenance_and_prints_its_end_line(tmp_path, capsys):
    data = save_dataset(make_dataset(), tmp_path / "data")
    out = tmp_path / "run"
    assert cli(["train", "--data", str(data), "--backbone", "bpr", "--out", str(out), "--epochs", "1"]) == 0
    assert capsys.readouterr().out.strip().startswith(f"{out}: best epoch 1 of 1; test recall@20 ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["versions"]["guider"] == guider.__version__ == "0.4.0"
    assert "git_commit" in metrics and metrics["git_dirty"] in (True, False, None)
    assert metrics["git_commit"] == "not a git checkout" or len(metrics["git_commit"]) == 40


def test_guider_version():
    result = subprocess.run([sys.executable, "-m", "guider.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(f"guider {guider.__version__} (")
