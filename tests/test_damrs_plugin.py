"""The DA-MRS plug-in (method `damrs_plugin`) on MF-BPR, VBPR and LightGCN: its loss on BPR is the
authors' DA-MRS+MF-BPR calculate_loss (src/models/mfbpr.py) re-implemented in float64, on
LightGCN it is the DA-MRS backbone's (the authors' DA-MRS+LightGCN is MMRec's DAMRS), evaluation
ranks with the augmented items, it trains through guider.engine.trainer.train, one modality works,
and what it cannot do is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_dataset, run_config
from test_model_damrs import dense_graphs_of, mmrec_calculate_loss

import guider.methods.damrs  # noqa: F401  (registers the method)
import guider.models.damrs  # noqa: F401  (registers the backbone)
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.data import save_dataset
from guider.engine.trainer import model_inputs, train
from guider.methods import Batch, method_class
from guider.methods.damrs import DAMRSPlugin, DAMRSPluginConfig
from guider.models import build_model, get_class

KNN_K = 4
SMALL = {"embedding_size": 8}

# the authors' src/configs/model/MFBPR.yaml (LightGCN.yaml: the same, without reg_weight),
# their README's build_iib_graph.py --topk=2, and its hard-coded >= 2 shared users
AUTHORS_YAML = {
    "knn_k": 10,
    "n_mm_layers": 1,
    "kl_weight": 1.0,
    "neighbor_weight": 0.001,
    "reg_weight": 0.1,  # on lightgcn 0 (the method's run_defaults: their LightGCN has no such term)
    "iib_topk": 2,
    "iib_min_users": 2,
}


@pytest.fixture(scope="module")
def dataset():
    return make_dataset()


def plugin_on(backbone: str, ds, seed: int = 0, model: dict | None = None, **damrs):
    inputs = model_inputs(ds, torch.device("cpu"))
    config = run_config(backbone, "damrs_plugin", model=SMALL | (model or {}), damrs={"knn_k": KNN_K} | damrs)
    torch.manual_seed(seed)
    net = build_model(backbone, inputs, config.model)
    return DAMRSPlugin(net, inputs, ds, config), inputs


def fixed_batch(inputs, size: int = 24) -> Batch:
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    neg = torch.randint(inputs.n_items, (size,), generator=gen)
    users, items = torch.tensor(inputs.train_users), torch.tensor(inputs.train_items)
    return Batch(users[rows], items[rows], neg, rows)


def authors_mfbpr_loss(user_emb, item_emb, graphs, batch: Batch, reg_weight=0.1, neighbor_weight=0.001, kl_weight=1.0):
    """The authors' MFBPR.calculate_loss: forward() = raw U, E and h_v = A_v E (n_mm_layers 1);
    the DA-MRS terms (their functions are MMRec DAMRS's, line for line) + reg_weight x reg_loss
    (sum of the Frobenius norms of the user, augmented positive and negative rows / B)."""
    views = {v: adj @ item_emb for v, adj in graphs.items()}
    users, pos, neg = batch.users, batch.pos, batch.neg
    damrs = mmrec_calculate_loss(user_emb, item_emb, views, users, pos, neg, neighbor_weight, kl_weight)
    augmented = item_emb + (views["text"] + views["image"] + views["behaviour"]) / 3.0
    u, p, n = user_emb[users], augmented[pos], augmented[neg]
    reg = (torch.norm(u, p=2) + torch.norm(p, p=2) + torch.norm(n, p=2)) / n.shape[0]
    return damrs + reg_weight * reg


# --- the loss ---------------------------------------------------------------------------------
def test_loss_on_bpr_equals_the_authors_mfbpr_calculate_loss(dataset):
    plugin, inputs = plugin_on("bpr", dataset, neighbor_weight=0.2)
    batch = fixed_batch(inputs)
    params = {n: p.detach().double().clone().requires_grad_(True) for n, p in plugin.model.named_parameters()}
    graphs = dense_graphs_of(inputs, KNN_K)
    expected = authors_mfbpr_loss(params["user_emb"], params["item_emb"], graphs, batch, neighbor_weight=0.2)
    expected.backward()
    plugin.model.train()
    loss, logs = plugin.step(batch, 0)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for name, param in plugin.model.named_parameters():
        np.testing.assert_allclose(param.grad.double().numpy(), params[name].grad.numpy(), atol=1e-5, err_msg=name)
    assert 0 < logs["damrs_pos_weight"] <= 1 and 0 <= logs["damrs_neg_weight"] <= 1


def test_on_lightgcn_it_is_the_damrs_backbone(dataset):
    """The authors' DA-MRS+LightGCN is MMRec's DAMRS: with the same embeddings and 2 layers the
    plug-in's loss, gradients and eval items are the backbone's; its graphs propagate the
    layer-0 item embeddings; LightGCN's own reg_weight is unused."""
    plugin, inputs = plugin_on("lightgcn", dataset, model={"n_layers": 2})
    backbone = build_model("damrs", inputs, {"embedding_size": 8, "knn_k": KNN_K, "n_ui_layers": 2})
    with torch.no_grad():
        backbone.user_emb.copy_(plugin.model.user_emb)
        backbone.item_emb.copy_(plugin.model.item_emb)
    assert plugin.reg_weight == 0.0
    batch = fixed_batch(inputs)
    loss, _ = plugin.step(batch, 0)
    loss.backward()
    expected = backbone.loss(batch.users, batch.pos, batch.neg)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    for name in ("user_emb", "item_emb"):
        grad, reference = getattr(plugin.model, name).grad, getattr(backbone, name).grad
        assert torch.allclose(grad, reference, atol=1e-6), name
    assert torch.allclose(plugin.eval_embeddings().items, backbone.eval_embeddings().items, atol=1e-6)


def test_reg_weight_defaults_to_the_authors_per_backbone_and_can_be_set(dataset):
    assert plugin_on("bpr", dataset)[0].reg_weight == 0.1
    assert plugin_on("vbpr", dataset)[0].reg_weight == 0.1
    assert plugin_on("lightgcn", dataset)[0].reg_weight == 0.0
    assert plugin_on("lightgcn", dataset, reg_weight=0.05)[0].reg_weight == 0.05
    assert resolve_run_config("lightgcn", method="damrs_plugin").section("damrs").reg_weight == 0.0
    resolved = resolve_run_config("lightgcn", method="damrs_plugin", sets=["damrs.reg_weight=0.2"])
    assert resolved.section("damrs").reg_weight == 0.2


# --- evaluation -------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["bpr", "vbpr", "lightgcn"])
def test_eval_ranks_with_the_augmented_items(dataset, backbone):
    plugin, inputs = plugin_on(backbone, dataset)
    model = plugin.model
    plain = model.eval_embeddings()
    source = model.item_emb if backbone == "lightgcn" else plain.items  # the authors': the raw ID embedding
    graphs = dense_graphs_of(inputs, KNN_K)
    h = sum(adj @ source.detach().double() for adj in graphs.values()) / len(graphs)
    expected_items = plain.items.double() + h
    emb = plugin.eval_embeddings()
    np.testing.assert_allclose(emb.items.double().numpy(), expected_items.numpy(), atol=1e-5)
    users = torch.tensor([0, 7, 29])
    scores = plugin.scores(emb, users)
    expected = plain.users[users].double() @ expected_items.T
    np.testing.assert_allclose(scores.double().numpy(), expected.numpy(), atol=1e-5)
    assert not torch.allclose(scores, model.scores(plain, users), atol=1e-4)  # not the plain backbone's
    assert emb.items.shape == plain.items.shape and not emb.items.requires_grad


# --- training through the trainer -------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_dataset(make_dataset(n_users=24, n_items=30), tmp_path_factory.mktemp("data") / "tiny")


def run(folder, out, backbone, **kw):
    sets = ("train.batch_size=64", "damrs.knn_k=3", *kw.pop("sets", ()))
    return train(folder, out, backbone, method="damrs_plugin", device="cpu", progress=False, sets=sets, **kw)


@pytest.mark.parametrize("backbone", ["bpr", "vbpr", "lightgcn"])
def test_trains_two_epochs_and_writes_metrics(folder, tmp_path, backbone):
    metrics = run(folder, tmp_path / "r", backbone, epochs=2)
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["method"] == "damrs_plugin" and saved["backbone"] == backbone and saved["epochs_run"] == 2
    assert saved["test"] == metrics["test"] and np.isfinite(saved["test"]["recall@20"])
    log = pd.read_csv(tmp_path / "r" / "log.csv")
    assert len(log) == 2 and np.isfinite(log["train_loss"]).all()
    assert {"damrs_pos_weight", "damrs_neg_weight", "damrs_neighbour", "damrs_kl"} <= set(log.columns)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["damrs"]["knn_k"] == 3
    assert config["damrs"]["reg_weight"] == (0.0 if backbone == "lightgcn" else 0.1)


def test_same_seed_same_run(folder, tmp_path):
    a = run(folder, tmp_path / "a", "bpr", epochs=2, seed=3)
    b = run(folder, tmp_path / "b", "bpr", epochs=2, seed=3)
    assert a["test"] == b["test"]
    assert pd.read_csv(tmp_path / "a" / "log.csv")["train_loss"].equals(
        pd.read_csv(tmp_path / "b" / "log.csv")["train_loss"]
    )


# --- what it refuses, one modality --------------------------------------------------------------
def test_an_unsupported_backbone_is_a_config_error_before_any_data_is_read(tmp_path):
    message = r"damrs_plugin \(DA-MRS\) plugs into the backbones bpr, vbpr, lightgcn; got 'freedom'"
    with pytest.raises(ConfigError, match=message):
        run(tmp_path / "no-such-folder", tmp_path / "f", "freedom", epochs=1)
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("freedom", method="damrs_plugin")
    assert not (tmp_path / "f").exists()
    for backbone in ("damrs", "mmgcn", "pop"):  # the check alone, for a resolver that knows only the name
        with pytest.raises(ConfigError, match=f"got '{backbone}'"):
            DAMRSPlugin.check_backbone(backbone)
    for backbone in ("bpr", "vbpr", "lightgcn"):
        DAMRSPlugin.check_backbone(backbone)


def test_one_modality_works_and_no_features_is_a_config_error(tmp_path):
    text_only = make_dataset(n_users=24, n_items=30)
    text_only.image_feat = None
    plugin, inputs = plugin_on("bpr", text_only)
    assert plugin.graphs.views == ("text", "behaviour")
    loss, _ = plugin.step(fixed_batch(inputs), 0)
    assert torch.isfinite(loss)
    metrics = run(save_dataset(text_only, tmp_path / "text"), tmp_path / "r", "vbpr", epochs=1)
    assert np.isfinite(metrics["test"]["recall@20"])
    featureless = make_dataset(n_users=24, n_items=30, features=False)
    with pytest.raises(ConfigError, match="damrs_plugin .*needs text or image features"):
        plugin_on("bpr", featureless)


# --- the typed section ------------------------------------------------------------------------
def test_section_defaults_are_the_authors_yaml():
    assert DAMRSPluginConfig().to_dict() == AUTHORS_YAML
    cls = method_class("damrs_plugin")
    assert cls is DAMRSPlugin and cls.display_name == "DA-MRS" and cls.sections == {"damrs": DAMRSPluginConfig}
    assert cls.requires_features == "any" and cls.reads_negatives
    assert set(DAMRSPluginConfig.grid) == {
        "damrs.n_mm_layers",
        "damrs.reg_weight",
        "damrs.neighbor_weight",
        "damrs.kl_weight",
    }
    # the fields that mean the same as the backbone's carry the same names
    backbone_fields = set(get_class("damrs").Config.keys())
    assert set(DAMRSPluginConfig.keys()) - backbone_fields == {"reg_weight"}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("damrs.knn_k=0", "damrs.knn_k must be >= 1"),
        ("damrs.reg_weight=-1", "damrs.reg_weight must be >= 0"),
        ("damrs.iib_topk=0", "damrs.iib_topk must be >= 1"),
        ("damrs.neighbour_weight=1", "unknown config key damrs.neighbour_weight"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(setting, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("bpr", method="damrs_plugin", sets=(setting,))
