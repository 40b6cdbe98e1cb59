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
    assert all(len(row) == 10 and float(row[6]) > 100 for row in rows)  # peak RSS in MB (torch alone > 100)
    assert all(row[-1] == "True" for row in rows)  # the replaced evaluation gives the same per-user values


def test_bench_guider_times_plain_and_paper(folder, capsys, monkeypatch):
    sets = ["--set", "amsc.knn_k=3", "--set", "kd.candidates=12", "--set", "kd.teacher_top=4"]
    script("bench_guider", monkeypatch).main(
        ["--data", str(folder), "--backbones", "bpr", "--epochs", "1", "--threads", "1", *sets]
    )
    out = capsys.readouterr().out
    assert "max ratio" in out and "\nbpr " in out
