"""A backbone defined outside the package (here, in this test file) is a first-class citizen:
registered by name, configured with --set model.<key>=..., trained plain and with GUIDER."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from conftest import make_dataset
from torch import nn

from guider.cli import main as cli
from guider.config.sections import setting
from guider.data import save_dataset
from guider.data.noise import inject_noise
from guider.models import Embeddings, ModelConfig, Recommender, register
from guider.models.losses import bpr_per_sample


@dataclass(frozen=True)
class ScaledMFConfig(ModelConfig):
    embedding_size: int = setting(16, ge=1)
    scale: float = setting(1.0, gt=0)  # multiplies every score


@register("scaled_mf_plugin_test")
class ScaledMF(Recommender):
    """Matrix factorisation whose scores are multiplied by `scale`."""

    Config = ScaledMFConfig
    display_name = "ScaledMF"

    def __init__(self, inputs, config: ScaledMFConfig):
        super().__init__(inputs, config)
        self.users = nn.Parameter(0.1 * torch.randn(self.n_users, config.embedding_size))
        self.items = nn.Parameter(0.1 * torch.randn(self.n_items, config.embedding_size))

    def propagate(self) -> Embeddings:
        return Embeddings(users=self.config.scale * self.users, items=self.items)

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]
        return bpr_per_sample((u * emb.items[pos]).sum(-1), (u * emb.items[neg]).sum(-1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_dataset(inject_noise(make_dataset(), 0.2, seed=0), tmp_path_factory.mktemp("d") / "noisy")


def train(folder, out, *extra):
    args = ["train", "--data", str(folder), "--backbone", "scaled_mf_plugin_test", "--out", str(out)]
    return cli([*args, "--epochs", "2", "--no-progress", "--device", "cpu", *extra])


def test_trains_with_its_own_settings_plain_and_with_guider(folder, tmp_path):
    assert train(folder, tmp_path / "plain", "--set", "model.scale=2.5", "--set", "model.embedding_size=8") == 0
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["model"] == {"embedding_size": 8, "scale": 2.5}
    sets = [
        "--set",
        "model.scale=2.5",
        "--set",
        "amsc.knn_k=3",
        "--set",
        "kd.candidates=12",
        "--set",
        "kd.teacher_top=4",
    ]
    assert train(folder, tmp_path / "guided", "--method", "paper", *sets) == 0
    metrics = json.loads((tmp_path / "guided" / "metrics.json").read_text())
    assert metrics["method"] == "paper" and metrics["backbone"] == "scaled_mf_plugin_test"
    assert metrics["teacher"]["backbone"] == "lightgcn" and 0 <= metrics["test"]["recall@20"] <= 1


def test_its_settings_are_checked_like_any_backbones(folder, tmp_path, caplog):
    assert train(folder, tmp_path / "bad", "--set", "model.scale=0") == 2
    assert "model.scale must be > 0, got 0" in caplog.text
    assert train(folder, tmp_path / "typo", "--set", "model.scael=2") == 2
    assert "unknown config key model.scael; known: embedding_size, scale" in caplog.text


def test_it_can_be_guiders_teacher_too(folder, tmp_path):
    sets = ["--set", "teacher.backbone=scaled_mf_plugin_test", "--set", "teacher.model.scale=0.5"]
    sets += ["--set", "amsc.knn_k=3", "--set", "kd.candidates=12", "--set", "kd.teacher_top=4"]
    args = ["train", "--data", str(folder), "--backbone", "bpr", "--out", str(tmp_path / "t"), "--method", "paper"]
    assert cli([*args, "--epochs", "1", "--no-progress", *sets]) == 0
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["teacher"]["model"] == {"embedding_size": 16, "scale": 0.5}
