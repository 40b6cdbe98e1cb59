"""Every trainable backbone through the trainer, on tiny data: the same seed gives the same
run, an interrupted run resumed equals an uninterrupted one, and GUIDER (`paper`) wraps it.
Each backbone's own file tests what is distinctive about it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset

from guider.data import save_dataset
from guider.data.noise import inject_noise
from guider.engine.trainer import Trainer, train
from guider.models import get_class, registered

BACKBONES = [name for name in registered() if get_class(name).trainable]
GUIDER_SETS = ("amsc.knn_k=3", "kd.candidates=12", "kd.teacher_top=4")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_dataset(make_dataset(n_users=24, n_items=30), tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def noisy_folder(tmp_path_factory):
    noisy = inject_noise(make_dataset(n_users=24, n_items=30, per_user=10), 0.2, seed=0)
    return save_dataset(noisy, tmp_path_factory.mktemp("data") / "noisy")


def run(folder, out, backbone, **kw):
    kw.setdefault("epochs", 3)
    sets = ("train.batch_size=64", *kw.pop("sets", ()))
    return train(folder, out, backbone, device="cpu", progress=False, sets=sets, **kw)


def train_losses(out) -> list[float]:
    return pd.read_csv(out / "log.csv")["train_loss"].tolist()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_same_seed_same_run_other_seed_other_losses(folder, tmp_path, backbone):
    a = run(folder, tmp_path / "a", backbone, seed=3)
    b = run(folder, tmp_path / "b", backbone, seed=3)
    run(folder, tmp_path / "c", backbone, seed=4)
    assert a["test"] == b["test"]
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")
    assert train_losses(tmp_path / "a") != train_losses(tmp_path / "c")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_resume_after_interruption_matches_uninterrupted(folder, tmp_path, monkeypatch, backbone):
    full = run(folder, tmp_path / "full", backbone, epochs=4, seed=1)
    original = Trainer.run_epoch

    def crash_at_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(folder, tmp_path / "part", backbone, epochs=4, seed=1)
    monkeypatch.setattr(Trainer, "run_epoch", original)
    resumed = run(folder, tmp_path / "part", backbone, epochs=4, seed=1, resume=True)
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]
    assert resumed["epochs_run"] == 4


@pytest.mark.parametrize("backbone", BACKBONES)
def test_guider_wraps_it(noisy_folder, tmp_path, backbone):
    metrics = run(noisy_folder, tmp_path / "g", backbone, epochs=2, method="paper", sets=GUIDER_SETS)
    saved = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert saved["method"] == "paper" and saved["backbone"] == backbone and saved["epochs_run"] == 2
    assert saved["test"] == metrics["test"] and np.isfinite(saved["test"]["recall@20"])
