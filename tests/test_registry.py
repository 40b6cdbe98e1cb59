"""Backbone registry and typed hyper-parameters: one Config per backbone, MMRec's defaults."""

import dataclasses

import pytest
import torch
from conftest import make_dataset

from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.engine.trainer import model_inputs
from guider.models import ModelConfig, Recommender, available, build_model, default_hparams, get_class, register
from guider.models.base import ModelInputs

# MMRec's src/configs/model/<Model>.yaml (enoche/MMRec), written out independently of the
# package: single values as given, grids as the value we default to (see each Config)
MMREC_DEFAULTS = {
    "pop": {},
    "bpr": {"embedding_size": 64, "reg_weight": 1e-4},
    "lightgcn": {"embedding_size": 64, "n_layers": 3, "reg_weight": 1e-4},
    "vbpr": {"embedding_size": 64, "reg_weight": 1e-5},
    "freedom": {
        "embedding_size": 64,
        "knn_k": 10,
        "mm_image_weight": 0.1,
        "n_mm_layers": 1,
        "n_ui_layers": 2,
        "dropout": 0.8,
        "reg_weight": 1e-4,
    },
    "bm3": {"embedding_size": 64, "n_layers": 1, "dropout": 0.5, "reg_weight": 0.1, "cl_weight": 2.0},
    # MMGCN.yaml says n_layers 2, but MMRec's GCN always runs three layers (the authors' code too)
    "mmgcn": {"embedding_size": 64, "n_layers": 3, "reg_weight": 0.0},
    "grcn": {
        "embedding_size": 64,
        "latent_embedding": 64,
        "n_layers": 3,
        "reg_weight": 0.1,
        "weight_mode": "confid",
        "fusion_mode": "concat",
        "pruning": True,
    },
    "dualgnn": {
        "embedding_size": 64,
        "n_layers": 2,
        "aggr_mode": "add",
        "reg_weight": 0.1,
        "k": 40,
        "user_aggr_mode": "softmax",
    },
    "lattice": {
        "embedding_size": 64,
        "feat_embed_dim": 64,
        "n_ui_layers": 2,
        "n_layers": 1,
        "knn_k": 10,
        "lambda_coeff": 0.9,
        "cf_model": "lightgcn",
        "reg_weight": 0.0,
    },
    "slmrec": {
        "recdim": 64,
        "layer_num": 3,
        "reg": 1e-4,
        "ssl_task": "FAC",
        "ssl_alpha": 0.01,
        "ssl_temp": 0.1,
        "dropout_rate": 0.3,
        "mm_fusion_mode": "concat",
        "temp": 0.2,
        "init": "xavier",
        "adj_type": "pre",
    },
    "dragon": {
        "embedding_size": 64,
        "n_layers": 2,
        "n_mm_layers": 1,
        "knn_k": 10,
        "mm_image_weight": 0.1,
        "aggr_mode": "add",
        "reg_weight": 0.001,
        "k": 40,
        "user_aggr_mode": "softmax",
    },
    "damrs": {
        "embedding_size": 64,
        "n_ui_layers": 2,
        "n_mm_layers": 1,
        "knn_k": 10,
        "kl_weight": 1.0,
        "neighbor_weight": 0.001,
        "iib_topk": 2,
        "iib_min_users": 2,
    },
    "mgcn": {
        "embedding_size": 64,
        "n_ui_layers": 2,
        "n_layers": 1,
        "knn_k": 10,
        "reg_weight": 1e-4,
        "cl_loss": 0.001,
        "temperature": 0.2,
    },
    "lgmrec": {
        "embedding_size": 64,
        "cf_model": "lightgcn",
        "n_ui_layers": 2,
        "n_mm_layers": 2,
        "n_hyper_layer": 1,
        "hyper_num": 4,
        "keep_rate": 0.5,
        "alpha": 0.3,
        "cl_weight": 1e-4,
        "reg_weight": 1e-6,
        "tau": 0.2,
        "eval_gumbel_noise": True,
    },
    "smore": {
        "embedding_size": 64,
        "n_ui_layers": 4,
        "n_layers": 1,
        "image_knn_k": 40,
        "text_knn_k": 15,
        "reg_weight": 1e-4,
        "cl_loss": 0.01,
        "temperature": 0.2,
        "dropout_rate": 0.1,
    },
}


def test_all_backbones_registered():
    assert set(MMREC_DEFAULTS) <= set(available())


@pytest.mark.parametrize("name", sorted(MMREC_DEFAULTS))
def test_config_defaults_are_mmrecs(name):
    assert default_hparams(name) == pytest.approx(MMREC_DEFAULTS[name])


@pytest.mark.parametrize("name", available())
def test_every_backbone_has_one_typed_config_whose_defaults_pass_its_checks(name):
    config_class = get_class(name).Config
    assert dataclasses.is_dataclass(config_class) and issubclass(config_class, ModelConfig)
    assert config_class.build({}, "model") == config_class()
    train = resolve_run_config(name).train
    for key, values in config_class.grid.items():
        section, _, field = key.partition(".")
        assert section in ("model", "train"), f"{name}: grid key {key!r} must be model.<key> or train.<key>"
        default = getattr(config_class() if section == "model" else train, field)
        assert default in values, f"{name}.{key}: default {default} outside MMRec's grid {values}"


def test_unknown_names_and_hparams_are_clear_errors():
    inputs = model_inputs(make_dataset(), torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown backbone 'lightgcm'; available: .*lightgcn"):
        build_model("lightgcm", inputs)
    with pytest.raises(ConfigError, match=r"unknown config key model.layers; known: embedding_size, n_layers"):
        build_model("lightgcn", inputs, {"layers": 2})
    assert isinstance(inputs, ModelInputs)


def test_register_requires_a_model_config():
    class NoConfig(Recommender):
        Config = dict

    with pytest.raises(TypeError, match="Config must be a dataclass derived from guider.models.ModelConfig"):
        register("no-config-test")(NoConfig)
    assert "no-config-test" not in available()


def test_a_backbones_train_defaults_and_the_lr_schedule(tmp_path, monkeypatch):
    """Config.train_defaults change the trainer's defaults for that backbone only; the trainer
    applies MMRec's schedule lr x gamma ** (epoch / step) at each epoch."""
    from guider.models.bpr import BPRConfig

    monkeypatch.setattr(BPRConfig, "train_defaults", {"lr_scheduler": [0.5, 2.0]})
    assert resolve_run_config("bpr").train.lr_scheduler == [0.5, 2.0]
    assert resolve_run_config("lightgcn").train.lr_scheduler == [1.0, 50.0]  # MMRec overall.yaml: constant
    assert resolve_run_config("bpr", sets=["train.lr_scheduler=[1.0, 50]"]).train.lr_scheduler == [1.0, 50.0]
    config = resolve_run_config("bpr", sets=["train.lr=0.01"])
    from guider.engine.trainer import Trainer

    trainer = Trainer(make_dataset(), tmp_path, config, torch.device("cpu"), progress=False)
    seen = []
    for epoch in range(4):
        trainer.run_epoch(epoch)
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([0.01 * 0.5 ** (e / 2) for e in range(4)])
    with pytest.raises(ConfigError, match=r"train.lr_scheduler must be \[gamma, step\]"):
        resolve_run_config("bpr", sets=["train.lr_scheduler=[0.9]"])
