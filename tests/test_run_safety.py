"""Run folders: checkpoints never run code, a run is bound to its data, one folder holds one
run, and every failure is one line naming the file or key (the CLI's exit codes)."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys

import pytest
import torch
from conftest import make_dataset

from guider.cli import main as cli
from guider.data import save_dataset
from guider.data.noise import inject_noise

MARKER_ENV = "GUIDER_TEST_PAYLOAD_MARKER"


class Payload:
    """Unpickling this calls os.system, which creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def train_args(data, out, *extra):
    return ["train", "--data", str(data), "--backbone", "bpr", "--out", str(out), "--no-progress", *extra]


def snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


@pytest.fixture
def data(tmp_path):
    return save_dataset(make_dataset(), tmp_path / "data")


@pytest.fixture
def finished_run(data, tmp_path):
    out = tmp_path / "run"
    assert cli(train_args(data, out, "--epochs", "2")) == 0
    return out


# --- 1. checkpoints hold no code ---------------------------------------------------------
def test_a_payload_checkpoint_never_runs_and_leaves_the_folder_untouched(data, finished_run, tmp_path, caplog):
    marker = tmp_path / "payload-ran"
    torch.save({"config": {}, "model": Payload(marker), "run": {}}, finished_run / "checkpoint.pt")
    before = snapshot(finished_run)
    assert cli(train_args(data, finished_run, "--epochs", "3", "--resume")) == 2
    assert not marker.exists()
    assert snapshot(finished_run) == before  # nothing written, nothing removed
    assert f"{finished_run / 'checkpoint.pt'}: refused to load" in caplog.text
    assert "posix.system" in caplog.text and "Traceback" not in caplog.text


def test_the_diagnostics_script_refuses_a_payload_checkpoint_too(data, tmp_path):
    import importlib.util
    from pathlib import Path

    marker = tmp_path / "payload-ran"
    run = tmp_path / "r"
    run.mkdir()
    torch.save({"config": {}, "model": Payload(marker), "run": {}}, run / "checkpoint.pt")
    path = Path(__file__).resolve().parents[1] / "scripts" / "amsc_diagnostics.py"
    spec = importlib.util.spec_from_file_location("amsc_diagnostics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    noisy = save_dataset(inject_noise(make_dataset(), 0.2, seed=0), tmp_path / "noisy")
    with pytest.raises(ValueError, match="refused to load"):
        module.main(["--run", str(run), "--data", str(noisy)])
    assert not marker.exists()


def test_no_torch_load_in_the_tree_unpickles_arbitrary_objects():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(p.relative_to(root))
        for folder in ("guider", "scripts", "benchmarks")
        for p in (root / folder).rglob("*.py")
        if "weights_only=False" in p.read_text() or "allow_pickle=True" in p.read_text()
    ]
    assert offenders == []


@pytest.mark.parametrize("content", [b"", b"\x80\x04garbage that is not a zip", b"PK\x03\x04 truncated"])
def test_an_empty_or_garbage_checkpoint_is_one_line_naming_the_file(data, finished_run, content, caplog):
    from guider.runs.checkpoint import CheckpointError, read_checkpoint

    (finished_run / "checkpoint.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="checkpoint.pt: "):
        read_checkpoint(finished_run / "checkpoint.pt")
    assert cli(train_args(data, finished_run, "--epochs", "3", "--resume")) == 2
    assert f"{finished_run / 'checkpoint.pt'}:" in caplog.text and "Traceback" not in caplog.text


# --- 3. a run is bound to its data ------------------------------------------------------
def test_resume_on_other_data_starts_afresh_with_a_clear_line(data, finished_run, tmp_path, caplog):
    noisy = save_dataset(inject_noise(make_dataset(), 0.3, seed=0), tmp_path / "noisy")  # same name, other rows
    with caplog.at_level(logging.WARNING):
        assert cli(train_args(noisy, finished_run, "--epochs", "2", "--resume")) == 0
    assert "the checkpoint was trained on other data (dataset 'tiny'" in caplog.text
    assert "starting the run afresh" in caplog.text
    config = json.loads((finished_run / "config.json").read_text())
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert config["data"] == str(noisy) and metrics["data_fingerprint"] == config["data_fingerprint"]
    fresh = tmp_path / "fresh"
    assert cli(train_args(noisy, fresh, "--epochs", "2")) == 0
    assert metrics["test"] == json.loads((fresh / "metrics.json").read_text())["test"]  # trained on the noisy copy


def test_resume_strict_refuses_other_data_and_changes_nothing(data, finished_run, tmp_path, caplog):
    noisy = save_dataset(inject_noise(make_dataset(), 0.3, seed=0), tmp_path / "noisy")
    before = snapshot(finished_run)
    assert cli(train_args(noisy, finished_run, "--epochs", "2", "--resume=strict")) == 2
    assert "trained on other data" in caplog.text and "--resume=strict does not start afresh" in caplog.text
    assert snapshot(finished_run) == before
    assert cli(train_args(data, finished_run, "--epochs", "2", "--resume=strict")) == 0  # same data: continues


def test_a_changed_feature_file_changes_the_fingerprint(data, tmp_path):
    from guider.data import load_dataset
    from guider.data.format.fingerprint import dataset_fingerprint

    first = dataset_fingerprint(load_dataset(data))
    assert first == dataset_fingerprint(load_dataset(data))  # stable
    import numpy as np

    feat = np.load(data / "image_feat.npy")
    feat[0, 0] += 1.0
    np.save(data / "image_feat.npy", feat)
    assert dataset_fingerprint(load_dataset(data)) != first


# --- 4. one folder, one run -------------------------------------------------------------
def test_a_restart_with_another_method_clears_the_old_runs_files(tmp_path, caplog):
    noisy = save_dataset(inject_noise(make_dataset(), 0.2, seed=0), tmp_path / "noisy")
    out = tmp_path / "run"
    sets = ["--set", "amsc.knn_k=3", "--set", "kd.candidates=12", "--set", "kd.teacher_top=4"]
    assert cli(train_args(noisy, out, "--epochs", "1", "--method", "paper", *sets)) == 0
    assert {"amsc.npz", "denoise.json", "teacher_metrics.json"} <= {p.name for p in out.iterdir()}
    (out / "notes.txt").write_text("mine")  # not a run file: never touched
    assert cli(train_args(noisy, out, "--epochs", "1", "--resume")) == 0  # plain now
    names = {p.name for p in out.iterdir()}
    assert not names & {"amsc.npz", "denoise.json", "teacher_metrics.json"}
    assert "notes.txt" in names and json.loads((out / "metrics.json").read_text())["method"] == "none"


def test_a_run_without_its_checkpoint_is_not_mixed_with_a_new_one(data, finished_run, caplog):
    (finished_run / "checkpoint.pt").unlink()
    assert cli(train_args(data, finished_run, "--epochs", "1", "--seed", "7")) == 2  # no --resume: refused
    assert "already holds a run (config.json, log.csv, metrics.json" in caplog.text
    assert cli(train_args(data, finished_run, "--epochs", "1", "--seed", "7", "--resume")) == 0
    assert json.loads((finished_run / "metrics.json").read_text())["seed"] == 7
    assert "no checkpoint to resume; starting the run afresh" in caplog.text


def test_resuming_a_finished_run_trains_no_further(data, tmp_path):
    out = tmp_path / "r"
    args = train_args(data, out, "--epochs", "40", "--patience", "1")
    assert cli(args) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["epochs_run"] < 40  # stopped early
    assert cli([*args, "--resume"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert (again["epochs_run"], again["test"]) == (first["epochs_run"], first["test"])


# --- 7. one line per failure, never a traceback -------------------------------------------
def test_nan_loss_in_the_first_epoch_names_no_missing_checkpoint(data, tmp_path, monkeypatch, caplog):
    from guider.models.bpr import BPR

    real = BPR.sample_losses
    monkeypatch.setattr(BPR, "sample_losses", lambda self, *a: real(self, *a) * float("nan"))
    assert cli(train_args(data, tmp_path / "r", "--epochs", "2")) == 2
    assert "training loss is nan at epoch 0, batch 0" in caplog.text
    assert "no epoch finished, so there is no checkpoint to resume" in caplog.text
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_ctrl_c_exits_130_and_says_how_to_resume(data, tmp_path, monkeypatch, caplog):
    from guider.engine.trainer import Trainer

    real = Trainer.run_epoch

    def interrupted_at_epoch_1(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", interrupted_at_epoch_1)
    assert cli(train_args(data, tmp_path / "r", "--epochs", "3")) == 130
    assert "interrupted;" in caplog.text and "run the same command with --resume to continue" in caplog.text
    monkeypatch.setattr(Trainer, "run_epoch", real)
    assert cli(train_args(data, tmp_path / "r", "--epochs", "3", "--resume")) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc")
def test_out_that_is_a_file_or_cannot_be_created_is_one_line(data, tmp_path, caplog):
    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    assert cli(train_args(data, file_out, "--epochs", "1")) == 2
    assert f"--out {file_out} is a file" in caplog.text
    caplog.clear()
    unwritable = "/proc/guider-cannot-write-here/run"  # not creatable even by root
    assert cli(train_args(data, unwritable, "--epochs", "1")) == 2
    assert "/proc/guider-cannot-write-here" in caplog.text and "Traceback" not in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_out_is_one_line(data, tmp_path, caplog):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert cli(train_args(data, locked / "run", "--epochs", "1")) == 2
        assert "Permission denied" in caplog.text and str(locked / "run") in caplog.text
    finally:
        locked.chmod(0o700)


def test_a_full_disk_names_the_file(data, tmp_path, monkeypatch, caplog):
    """Writes that hit ENOSPC (sent to /dev/full): torch's inline_container message for the
    checkpoint, and a plain write error for JSON files, each become one line naming the file."""
    import pathlib

    import guider.runs.checkpoint as checkpoint
    from guider.cli import describe_error
    from guider.runs.atomic import write_text

    real_save = torch.save
    monkeypatch.setattr(checkpoint.torch, "save", lambda state, path: real_save(state, "/dev/full"))
    assert cli(train_args(data, tmp_path / "r", "--epochs", "2")) == 2
    assert f"cannot write {tmp_path / 'r' / 'checkpoint.pt'}" in caplog.text and "is the disk full?" in caplog.text
    assert "Traceback" not in caplog.text

    def to_full_disk(self, text):
        with open("/dev/full", "w") as full:
            full.write(text)

    monkeypatch.setattr(pathlib.Path, "write_text", to_full_disk)
    with pytest.raises(OSError) as err:
        write_text(tmp_path / "metrics.json", "{}")
    assert err.value.errno == errno.ENOSPC
    assert describe_error(err.value) == f"{tmp_path / 'metrics.json'}: No space left on device (the disk is full)"
    assert not list(tmp_path.glob(".metrics.json.*"))  # no temp file left behind


def test_invalid_yaml_config_is_one_line_naming_file_and_line(data, tmp_path, caplog):
    bad = tmp_path / "run.yaml"
    bad.write_text("train:\n  lr: [0.1\n")
    assert cli(train_args(data, tmp_path / "r", "--config", str(bad))) == 2
    assert f"{bad}: not valid YAML (line" in caplog.text and "Traceback" not in caplog.text
    bad.write_text("- a list\n")
    assert cli(train_args(data, tmp_path / "r", "--config", str(bad))) == 2
    assert "must be a YAML mapping of sections" in caplog.text
    assert not (tmp_path / "r").exists()  # refused before any work


# --- a finished checkpoint completes its outputs; one writer per folder ----------------
def test_resuming_a_finished_run_whose_outputs_were_removed_rewrites_every_output(data, finished_run, tmp_path):
    """Snakemake's rerun-incomplete deletes a killed job's declared outputs; the checkpoint of
    the last epoch stays. --resume must write every output again, identical."""
    before = {name: (finished_run / name).read_bytes() for name in ("log.csv", "per_user_test.csv")}
    metrics_before = json.loads((finished_run / "metrics.json").read_text())
    for name in ("log.csv", "metrics.json", "per_user_test.csv", "per_user_valid.csv"):
        (finished_run / name).unlink()
    assert cli(train_args(data, finished_run, "--epochs", "2", "--resume")) == 0
    assert {name: (finished_run / name).read_bytes() for name in before} == before
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["test"] == metrics_before["test"] and metrics["epochs_run"] == 2
    assert (finished_run / "per_user_valid.csv").exists()


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_holder(data, tmp_path, caplog):
    from guider.runs.run_dir import hold_run_dir

    out = tmp_path / "busy"
    with hold_run_dir(out):  # this process holds the folder, as a running `guider train` does
        assert cli(train_args(data, out, "--epochs", "1", "--resume")) == 2
    assert f"is in use by another guider train (PID {os.getpid()})" in caplog.text
    assert not (out / "config.json").exists()  # nothing written while refused
    assert cli(train_args(data, out, "--epochs", "1", "--resume")) == 0  # free again once released


def test_a_second_writer_in_another_process_is_refused(data, tmp_path):
    import subprocess

    out = tmp_path / "busy"
    script = f"from guider.runs.run_dir import hold_run_dir\nimport time\nwith hold_run_dir({str(out)!r}):\n"
    script += "    print('held', flush=True)\n    time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run(
            [sys.executable, "-m", "guider.cli", *train_args(data, out, "--epochs", "1")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2  # at once: the holder sleeps for a minute
        assert f"in use by another guider train (PID {holder.pid})" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("damage", ["extra run key", "wrong shapes"])
def test_a_checkpoint_that_does_not_fit_is_one_line_naming_the_file(data, finished_run, damage, caplog):
    path = finished_run / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    if damage == "extra run key":
        state["run"]["from_the_future"] = 1
    else:
        state["model"] = {key: torch.zeros(3, 3) for key in state["model"]}
    torch.save(state, path)
    assert cli(train_args(data, finished_run, "--epochs", "2", "--resume")) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(path) in errors[0] and "does not fit this run" in errors[0]
