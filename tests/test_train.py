"""Trainer: outputs, seeded determinism, resume equivalence, NaN stop, config errors."""

import json

import pandas as pd
import pytest
import torch

from guider.cli import main as cli
from guider.engine.trainer import Trainer, resolve_run_config, train

METRIC_KEYS = {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20, 50)}


def run(folder, out, backbone="lightgcn", sets=(), **kw):
    kw.setdefault("epochs", 4)
    return train(folder, out, backbone, device="cpu", progress=False, sets=("train.batch_size=64", *sets), **kw)


def test_outputs_and_metrics_json(tiny_folder, tmp_path):
    metrics = run(tiny_folder, tmp_path / "r")
    for name in ("config.json", "metrics.json", "log.csv", "checkpoint.pt", "per_user_test.csv"):
        assert (tmp_path / "r" / name).exists()
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["test"] == metrics["test"] and set(saved["test"]) == METRIC_KEYS
    assert {
        "dataset",
        "backbone",
        "method",
        "data_fingerprint",
        "seed",
        "best_epoch",
        "epochs_run",
        "valid",
        "test",
        "train_seconds",
        "seconds_per_epoch",
        "device",
        "versions",
    } <= set(saved)
    log = pd.read_csv(tmp_path / "r" / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3] and log["train_loss"].notna().all()
    per_user = pd.read_csv(tmp_path / "r" / "per_user_test.csv")
    assert per_user["recall@20"].mean() == pytest.approx(metrics["test"]["recall@20"], abs=1e-5)
    best = log.loc[log["valid_recall@20"].idxmax()]
    assert saved["best_epoch"] == int(best["epoch"])
    assert saved["valid"]["recall@20"] == pytest.approx(best["valid_recall@20"])


def test_same_seed_identical_metrics(tiny_folder, tmp_path):
    a = run(tiny_folder, tmp_path / "a", backbone="freedom", seed=3)
    b = run(tiny_folder, tmp_path / "b", backbone="freedom", seed=3)
    run(tiny_folder, tmp_path / "c", backbone="freedom", seed=4)
    assert a["test"] == b["test"]
    assert pd.read_csv(tmp_path / "a" / "log.csv")["train_loss"].equals(
        pd.read_csv(tmp_path / "b" / "log.csv")["train_loss"]
    )
    assert (
        pd.read_csv(tmp_path / "a" / "log.csv")["train_loss"].tolist()
        != pd.read_csv(tmp_path / "c" / "log.csv")["train_loss"].tolist()
    )


def test_resume_after_interruption_matches_uninterrupted(tiny_folder, tmp_path, monkeypatch):
    full = run(tiny_folder, tmp_path / "full", epochs=6, seed=1)
    original = Trainer.run_epoch

    def crash_at_epoch_3(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt("killed")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", crash_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_folder, tmp_path / "part", epochs=6, seed=1)
    monkeypatch.setattr(Trainer, "run_epoch", original)
    with pytest.raises(ValueError, match=r"already holds a run \(.*\); pass --resume"):
        run(tiny_folder, tmp_path / "part", epochs=6, seed=1)
    resumed = run(tiny_folder, tmp_path / "part", epochs=6, seed=1, resume=True)
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    assert resumed["epochs_run"] == 6


def test_resume_with_changed_config_starts_afresh(tiny_folder, tmp_path, caplog):
    run(tiny_folder, tmp_path / "r", epochs=2, seed=1)
    fresh = run(tiny_folder, tmp_path / "fresh", epochs=3, seed=1)
    again = run(tiny_folder, tmp_path / "r", epochs=3, seed=1, resume=True)
    assert "written with a different config (train.epochs: 2 -> 3)" in caplog.text
    assert "starting the run afresh" in caplog.text
    assert again["test"] == fresh["test"] and again["epochs_run"] == 3


def test_early_stopping_uses_patience(tiny_folder, tmp_path):
    metrics = run(tiny_folder, tmp_path / "r", epochs=50, patience=2, backbone="bpr")
    assert metrics["epochs_run"] <= metrics["best_epoch"] + 3
    assert metrics["epochs_run"] < 50


def test_nan_loss_stops_with_clear_error(tiny_folder, tmp_path, monkeypatch):
    from guider.models.bpr import BPR

    real = BPR.sample_losses
    monkeypatch.setattr(BPR, "sample_losses", lambda self, *a: real(self, *a) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"training loss is nan at epoch 0, batch 0.*no checkpoint to resume"):
        train(tiny_folder, tmp_path / "r", "bpr", device="cpu", progress=False, epochs=2)


def test_pop_is_evaluated_without_training(tiny_folder, tmp_path):
    metrics = run(tiny_folder, tmp_path / "r", backbone="pop")
    assert metrics["epochs_run"] == 0 and metrics["test"]["recall@50"] > 0


def test_config_errors():
    with pytest.raises(ValueError, match="unknown config key train.lrr"):
        resolve_run_config("bpr", sets=["train.lrr=1"])
    with pytest.raises(ValueError, match="unknown config key model.n_layers"):
        resolve_run_config("bpr", sets=["model.n_layers=2"])
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        resolve_run_config("nope")
    with pytest.raises(ValueError, match="--set expects key=value"):
        resolve_run_config("bpr", sets=["train.lr"])
    with pytest.raises(ValueError, match="unknown config section 'kd' for method 'none'; known: model, train"):
        resolve_run_config("bpr", sets=["kd.weight=0.2"])
    cfg = resolve_run_config("lightgcn", sets=["model.n_layers=2", "train.lr=5e-4"], epochs=7)
    assert cfg.model.n_layers == 2 and cfg.train.lr == 5e-4 and cfg.train.epochs == 7


def test_cli_train_and_bad_device(tiny_folder, tmp_path, capsys):
    code = cli(
        [
            "train",
            "--data",
            str(tiny_folder),
            "--backbone",
            "bpr",
            "--out",
            str(tmp_path / "r"),
            "--epochs",
            "1",
            "--no-progress",
            "--set",
            "train.batch_size=128",
        ]
    )
    assert code == 0 and "best epoch 1 of 1; test recall@20" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert (
            cli(
                [
                    "train",
                    "--data",
                    str(tiny_folder),
                    "--backbone",
                    "bpr",
                    "--out",
                    str(tmp_path / "g"),
                    "--device",
                    "cuda",
                ]
            )
            == 2
        )


def test_negatives_are_sampled_only_when_something_reads_them(tmp_path, monkeypatch):
    """Plain BM3 ignores negatives (none sampled); BM3 under GUIDER needs them for its teacher."""
    from guider.engine.sampling import NegativeSampler

    calls = []
    real = NegativeSampler.sample
    monkeypatch.setattr(NegativeSampler, "sample", lambda self, *a: calls.append(1) or real(self, *a))
    from conftest import make_dataset

    ds = make_dataset(n_users=12, n_items=15, per_user=6)
    for method, expected in (("none", 0), ("paper", 1)):
        calls.clear()
        sets = ["train.epochs=1"] + (["amsc.knn_k=3"] if method == "paper" else [])
        config = resolve_run_config("bm3", method=method, sets=sets)
        Trainer(ds, tmp_path / method, config, torch.device("cpu"), progress=False).run_epoch(0)
        assert len(calls) == expected, method


def test_min_epochs_holds_off_early_stopping(tiny_folder, tmp_path):
    quick = run(tiny_folder, tmp_path / "quick", backbone="bpr", epochs=30, patience=1)
    assert quick["epochs_run"] < 8  # patience 1 stops this run early ...
    held = run(tiny_folder, tmp_path / "held", backbone="bpr", epochs=30, patience=1, sets=("train.min_epochs=8",))
    log = pd.read_csv(tmp_path / "held" / "log.csv")
    assert 8 <= held["epochs_run"] < 30  # ... min_epochs lets it reach 8, then patience applies again
    assert held["best_epoch"] == int(log.loc[log["valid_recall@20"].idxmax(), "epoch"])
    assert (
        pd.read_csv(tmp_path / "quick" / "log.csv")["train_loss"].tolist()
        == log["train_loss"].tolist()[: quick["epochs_run"]]
    )


def test_the_removed_variant_and_denoise_flags_name_method(tiny_folder, tmp_path, caplog):
    args = ["train", "--data", str(tiny_folder), "--backbone", "bpr", "--epochs", "1", "--no-progress"]
    for option in ("--variant", "--denoise"):
        caplog.clear()
        assert cli([*args, "--out", str(tmp_path / option), option, "tce"]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors == [f"{option} was removed in 0.4; name the training method with --method NAME"]
        assert not (tmp_path / option).exists()
