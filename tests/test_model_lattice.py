"""LATTICE: the learned item graph, its skip connection and propagation, the loss and its
gradients against a dense float64 re-implementation of MMRec's LATTICE; the once-per-epoch
rebuild; training determinism, resume and GUIDER on top; the typed config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_dataset, random_inputs

import guider.models.lattice  # noqa: F401  (registers the backbone)
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.data import save_dataset
from guider.engine.trainer import train
from guider.models import ModelInputs, build_model, default_hparams, get_class
from guider.models.lattice import LATTICE

N_USERS, N_ITEMS, D_TEXT, D_IMAGE = 7, 11, 6, 5
TINY = {"embedding_size": 8, "feat_embed_dim": 4, "knn_k": 3}
FEATURE_SETS = {"both": (True, True), "text": (True, False), "image": (False, True)}

# MMRec src/configs/model/LATTICE.yaml, written out (grids: the value we default to)
MMREC_LATTICE_YAML = {
    "embedding_size": 64,
    "feat_embed_dim": 64,
    "n_ui_layers": 2,  # len(weight_size: [64, 64])
    "n_layers": 1,
    "knn_k": 10,
    "lambda_coeff": 0.9,
    "cf_model": "lightgcn",
    "reg_weight": 0.0,  # grid [0.0, 1e-05, 1e-04, 1e-03]
}


def tiny_inputs(text: bool = True, image: bool = True, seed: int = 0) -> ModelInputs:
    """Every user has 3-5 items, one pair duplicated, one item unseen; random features."""
    return random_inputs(N_USERS, N_ITEMS, D_TEXT, D_IMAGE, text=text, image=image, seed=seed)


def tiny_model(inputs: ModelInputs, seed: int = 0, **overrides) -> LATTICE:
    torch.manual_seed(seed)
    model = build_model("lattice", inputs, TINY | overrides)
    model.on_epoch_start(0, torch.Generator().manual_seed(seed))
    return model


def batch(size: int = 16):
    gen = torch.Generator().manual_seed(1)
    return tuple(torch.randint(n, (size,), generator=gen) for n in (N_USERS, N_ITEMS, N_ITEMS))


# --- an independent dense float64 LATTICE, written as MMRec writes it ------------------------
def dense_sim(x):
    unit = x / x.norm(dim=-1, keepdim=True)
    return unit @ unit.T


def dense_knn(sim, k):
    values, indices = torch.topk(sim, k, dim=-1)
    return torch.zeros_like(sim).scatter(-1, indices, values)


def dense_laplacian(adj):
    d = adj.sum(-1).pow(-0.5)
    d = torch.where(torch.isinf(d), torch.zeros_like(d), d)
    return torch.diagflat(d) @ adj @ torch.diagflat(d)


def dense_item_adj(params, inputs, k, lam):
    """MMRec's forward(build_item_graph=True) graph: learned kNN mix, normalised, lambda skip."""
    raw_init = {m: f.double() for m, f in (("text", inputs.text_feat), ("image", inputs.image_feat)) if f is not None}
    learned, original = {}, {}
    for m, raw in raw_init.items():
        original[m] = dense_laplacian(dense_knn(dense_sim(raw), k))
        feats = params[f"raw_feat.{m}"] @ params[f"feat_proj.{m}.weight"].T + params[f"feat_proj.{m}.bias"]
        learned[m] = dense_knn(dense_sim(feats), k)
    if len(raw_init) == 2:
        w = torch.softmax(params["modal_weight"], dim=0)  # [image, text]
        learned_adj = w[0] * learned["image"] + w[1] * learned["text"]
        original_adj = w[0] * original["image"] + w[1] * original["text"]
    else:
        (learned_adj,), (original_adj,) = learned.values(), original.values()
    return (1 - lam) * dense_laplacian(learned_adj) + lam * original_adj


def dense_user_item_adj(inputs):
    """NGCF/LATTICE's D^-1 (A + I) of the (users + items) graph."""
    n = N_USERS + N_ITEMS
    adj = torch.eye(n, dtype=torch.float64)
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, N_USERS + i] = adj[N_USERS + i, u] = 1.0
    return adj / adj.sum(1, keepdim=True)


def dense_forward(params, inputs, item_adj, n_layers=1, n_ui_layers=2, cf_model="lightgcn"):
    h = params["item_emb"]
    for _ in range(n_layers):
        h = item_adj @ h
    if cf_model == "mf":
        users, items = params["user_emb"], params["item_emb"]
    else:
        ego = torch.cat([params["user_emb"], params["item_emb"]])
        adj = dense_user_item_adj(inputs)
        layers = [ego]
        for _ in range(n_ui_layers):
            layers.append(adj @ layers[-1])
        out = torch.stack(layers, dim=1).mean(dim=1)
        users, items = out[:N_USERS], out[N_USERS:]
    return users, items + F.normalize(h, p=2, dim=1)


def dense_loss(users_emb, items_emb, users, pos, neg, reg_weight, batch_size):
    """MMRec LATTICE.calculate_loss / bpr_loss."""
    u, p, n = users_emb[users], items_emb[pos], items_emb[neg]
    mf_loss = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    regularizer = (0.5 * (u**2).sum() + 0.5 * (p**2).sum() + 0.5 * (n**2).sum()) / batch_size
    return mf_loss + reg_weight * regularizer


def double_params(model):
    return {name: p.detach().double().clone().requires_grad_(True) for name, p in model.named_parameters()}


# --- the learned graph, its skip connection, the propagation -----------------------------------
@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_item_graph_matches_dense_reference(features):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, lambda_coeff=0.6)
    with torch.no_grad():
        graph = model.build_graph()
    expected = dense_item_adj(double_params(model), inputs, 3, 0.6).detach()
    np.testing.assert_allclose(graph.adj.to_dense().double().numpy(), expected.numpy(), atol=1e-6)
    n_modalities = 2 if features == "both" else 1
    assert graph.adj._nnz() <= 2 * n_modalities * N_ITEMS * 3  # sparse: at most the kNN edges
    assert hasattr(model, "modal_weight") == (features == "both")


@pytest.mark.parametrize(("features", "cf_model"), [("both", "lightgcn"), ("text", "lightgcn"), ("both", "mf")])
def test_eval_embeddings_match_dense_reference(features, cf_model):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, n_layers=2, cf_model=cf_model)
    params = double_params(model)
    item_adj = dense_item_adj(params, inputs, 3, 0.9)
    users, items = dense_forward(params, inputs, item_adj, n_layers=2, cf_model=cf_model)
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.users.double().numpy(), users.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.items.double().numpy(), items.detach().numpy(), atol=1e-5)


def test_user_item_graph_is_row_normalised_with_self_loops():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    expected = dense_user_item_adj(inputs).numpy()
    np.testing.assert_allclose(model.norm_adj.to_dense().double().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(model.norm_adj_t.to_dense().double().numpy(), expected.T, atol=1e-6)


def test_first_batch_loss_and_gradients_match_mmrec():
    """The first batch learns the graph with autograd: the loss and the gradient of every
    parameter (projections, raw features, modal_weight through the graph) are MMRec's."""
    inputs = tiny_inputs()
    model = tiny_model(inputs, reg_weight=0.05)
    users, pos, neg = batch()
    params = double_params(model)
    item_adj = dense_item_adj(params, inputs, 3, 0.9)
    expected = dense_loss(*dense_forward(params, inputs, item_adj), users, pos, neg, 0.05, len(users))
    expected.backward()
    model.train()
    loss = model.loss(users, pos, neg)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        np.testing.assert_allclose(param.grad.double().numpy(), params[name].grad.numpy(), atol=1e-5, err_msg=name)
        assert param.grad.abs().sum() > 0, name


def test_later_batches_reuse_the_first_graph_detached_and_each_epoch_rebuilds():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    users, pos, neg = batch()
    first_graph = dense_item_adj(double_params(model), inputs, 3, 0.9).detach()  # parameters at batch 0
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    model.loss(users, pos, neg).backward()
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)

    params = double_params(model)
    expected = dense_loss(*dense_forward(params, inputs, first_graph), users, pos, neg, 0.0, len(users))
    expected.backward()
    loss = model.loss(users, pos, neg)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for name, param in model.named_parameters():
        graph_only = name.startswith(("raw_feat", "feat_proj", "modal_weight"))
        assert (param.grad is None) == graph_only, name  # no gradient through the detached graph
        if not graph_only:
            np.testing.assert_allclose(param.grad.double().numpy(), params[name].grad.numpy(), atol=1e-5)

    with torch.no_grad():
        stale = model.propagate()
    evaluated = model.eval_embeddings()  # rebuilt from the current parameters
    assert not torch.allclose(stale.items, evaluated.items, atol=1e-4)
    model.on_epoch_start(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        fresh = model.propagate()
    assert torch.allclose(fresh.items, evaluated.items, atol=1e-6)
    assert torch.allclose(fresh.users, evaluated.users, atol=1e-6)


def test_trainer_learns_the_graph_once_per_epoch(tmp_path, monkeypatch):
    folder = save_dataset(make_dataset(), tmp_path / "d")
    builds = []
    real = LATTICE.build_graph

    def counting(self):
        builds.append((self.training, torch.is_grad_enabled()))
        return real(self)

    monkeypatch.setattr(LATTICE, "build_graph", counting)
    train(folder, tmp_path / "r", "lattice", device="cpu", progress=False, epochs=2, sets=("train.batch_size=64",))
    training_builds = [grad for is_training, grad in builds if is_training]
    assert training_builds == [True, True]  # one per epoch (its first batch, with autograd)
    assert builds.count((False, False)) == 4  # validation after each epoch, valid + test at the end


# --- the typed config -----------------------------------------------------------------------
def test_config_defaults_are_mmrecs_yaml():
    assert default_hparams("lattice") == pytest.approx(MMREC_LATTICE_YAML)
    config = get_class("lattice").Config
    assert config.grid == {"model.reg_weight": (0.0, 1e-5, 1e-4, 1e-3), "train.lr": (1e-4, 5e-4, 1e-3, 5e-3)}
    run_config = resolve_run_config("lattice")
    assert run_config.train.lr_scheduler == [0.96, 50.0] and run_config.train.lr == 0.001
    for key in config.grid:
        section, _, field = key.partition(".")
        assert hasattr(run_config.model if section == "model" else run_config.train, field)
    assert get_class("lattice").display_name == "LATTICE"
    assert not get_class("lattice").train_propagate_equals_eval


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lambda_coeff", "1.5", "model.lambda_coeff must be <= 1"),
        ("knn_k", "0", "model.knn_k must be >= 1"),
        ("cf_model", "ngcf", "model.cf_model must be one of lightgcn, mf"),
        ("reg_weight", "-1", "model.reg_weight must be >= 0"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("lattice", sets=(f"model.{key}={value}",))


def test_knn_k_larger_than_the_catalogue_is_a_clear_error():
    with pytest.raises(ValueError, match="knn_k"):
        tiny_model(tiny_inputs(), knn_k=N_ITEMS + 1)
