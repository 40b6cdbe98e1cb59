"""Plug-ins by name: a backbone, a method and a noise kind defined in one module outside the
package reach `guider train`, `guider data noise`, the workflow config (`plugins:`), a dry run,
a real run and the report, with no edit to the package (guider.runs.plugins)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import make_dataset
from snakemake_runner import ROOT, snakemake

from guider.data import save_dataset

MODULE = "guider_test_plugin"
PLUGIN = textwrap.dedent(
    '''
    """A backbone, a method and a noise kind of one's own: one file, registered on import."""
    import copy
    from dataclasses import dataclass

    import numpy as np
    import torch
    from torch import nn

    from guider.config import setting
    from guider.data.noise import NoiseKind, register_noise_kind
    from guider.methods import Method, register_method
    from guider.models import Embeddings, ModelConfig, Recommender, register
    from guider.models.losses import bpr_per_sample


    @dataclass(frozen=True)
    class MineConfig(ModelConfig):
        embedding_size: int = setting(8, ge=1)


    @register("mine")
    class Mine(Recommender):
        Config = MineConfig
        display_name = "MineRec"

        def __init__(self, inputs, config):
            super().__init__(inputs, config)
            self.users = nn.Parameter(0.1 * torch.randn(self.n_users, config.embedding_size))
            self.items = nn.Parameter(0.1 * torch.randn(self.n_items, config.embedding_size))

        def propagate(self):
            return Embeddings(users=self.users, items=self.items)

        def sample_losses(self, emb, users, pos, neg):
            u = emb.users[users]
            return bpr_per_sample((u * emb.items[pos]).sum(-1), (u * emb.items[neg]).sum(-1))


    @register_method("halfloss")
    class HalfLoss(Method):
        display_name = "half loss"
        role = "baseline"

        def step(self, batch, epoch):
            return 0.5 * self.model.loss(batch.users, batch.pos, batch.neg), {}


    @register_noise_kind
    class Flip(NoiseKind):
        name = "flip"
        description = "a fraction of the train rows get a random other item, labelled is_noise=1"
        ratio_below = 1.0

        @classmethod
        def make(cls, ds, ratio, seed, options):
            rng = np.random.default_rng(seed)
            inter = ds.inter.copy()
            if "is_noise" not in inter.columns:
                inter["is_noise"] = 0
            train = np.flatnonzero(inter["x_label"].to_numpy() == 0)
            rows = rng.choice(train, int(round(ratio * len(train))), replace=False)
            inter.loc[rows, "itemID"] = rng.integers(0, ds.n_items, len(rows))
            inter.loc[rows, "is_noise"] = 1
            out = copy.copy(ds)
            out.inter = inter
            out.meta = {**ds.meta, "noise": {"kind": "flip", "ratio": float(ratio), "seed": int(seed)}}
            return out, {}
    '''
)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plug")
    (folder / f"{MODULE}.py").write_text(PLUGIN)
    return folder


def guider(plugin_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{plugin_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "guider.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_a_backbone_method_and_noise_kind_of_ones_own_reach_the_command_line(plugin_dir, tmp_path):
    data = save_dataset(make_dataset(), tmp_path / "data")
    train = ["train", "--data", str(data), "--backbone", "mine", "--epochs", "1", "--no-progress"]
    without = guider(plugin_dir, *train, "--out", str(tmp_path / "a"))
    assert without.returncode == 2 and "unknown backbone 'mine'" in without.stderr
    result = guider(plugin_dir, "--plugin", MODULE, *train, "--method", "halfloss", "--out", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["labels"]["backbone"] == "MineRec" and metrics["labels"]["method_role"] == "baseline"
    noisy = guider(plugin_dir, "data", "noise", "--plugin", MODULE, "--data", str(data), "--kind", "flip",
                   "--ratio", "0.2", "--out", str(tmp_path / "flip"))  # fmt: skip
    assert noisy.returncode == 0, noisy.stderr
    meta = json.loads((tmp_path / "flip" / "dataset.json").read_text())
    assert meta["noise"]["kind"] == "flip"
    missing = guider(plugin_dir, "--plugin", "no_such_plugin", "train", "--help")
    assert missing.returncode == 2 and "plug-in 'no_such_plugin' cannot be imported" in missing.stderr


def plugin_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(
        plugins=[MODULE],
        backbones=["bpr", "mine"],
        seeds=[0],
        tuning=None,
        ablation={"datasets": ["tiny"], "backbones": ["mine"], "methods": ["halfloss"]},
        noise={
            "datasets": ["tiny"],
            "backbones": ["mine"],
            "methods": ["none", "paper"],
            "kinds": ["flip"],
            "ratios": [0.0, 0.2],
        },  # fmt: skip
        train={"epochs": 1, "patience": 1, "device": "cpu"},
    )
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_snakemake(plugin_dir: Path, *args: str, cwd: Path, timeout: int = 600):
    env = {"PYTHONPATH": f"{plugin_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return snakemake(*args, cwd=cwd, env=env, timeout=timeout)


def test_the_workflow_takes_them_by_name_from_plugins(plugin_dir, tmp_path):
    result = run_snakemake(plugin_dir, "-n", "-p", "--configfile", str(plugin_config(tmp_path)), cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    assert "results/runs/tiny/base/mine/halfloss/seed0/metrics.json" in text
    assert "results/data/tiny/flip0.2/dataset.json" in text and "--kind flip" in text
    assert "--plugin guider_test_plugin" in text
    refused = yaml.safe_load(plugin_config(tmp_path).read_text())
    del refused["plugins"]
    (tmp_path / "refused.yaml").write_text(yaml.safe_dump(refused))
    result = run_snakemake(plugin_dir, "-n", "--configfile", str(tmp_path / "refused.yaml"), cwd=tmp_path)
    assert result.returncode != 0 and "'mine' is not one of" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_real_run_puts_them_in_the_report(plugin_dir, tmp_path):
    result = run_snakemake(plugin_dir, "--cores", "2", "--configfile", str(plugin_config(tmp_path)), cwd=tmp_path,
                           timeout=1500)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    main = (tmp_path / "results/tables/main.md").read_text()
    assert "MineRec" in main
    assert "half loss" in (tmp_path / "results/tables/baselines.md").read_text()
    assert "Flip 0.2 R@20" in (tmp_path / "results/tables/robustness.md").read_text()
    assert (tmp_path / "results/figures/noise_flip.png").exists()
