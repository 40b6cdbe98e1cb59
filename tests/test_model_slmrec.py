"""SLMRec: adjacency, propagation and MMRec's calculate_loss against dense float64 references;
config; seeded training, resume and GUIDER on top."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import random_inputs

import guider.models.slmrec  # noqa: F401  (registers the backbone)
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.engine.trainer import train
from guider.models import ModelInputs, build_model, default_hparams, get_class

N_USERS, N_ITEMS = 7, 11
ADJ_TYPES = ("pre", "plain", "norm", "gcmc", "mean")


def tiny_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    return random_inputs(N_USERS, N_ITEMS, 6, 5, text=text, image=image, per_user=(2, 5), scale=(3.0, 2.0))


def tiny_model(inputs: ModelInputs, **overrides):
    torch.manual_seed(0)
    values = {"recdim": 8, "layer_num": 2, "ssl_alpha": 0.7, "ssl_temp": 0.3, "temp": 0.4} | overrides
    model = build_model("slmrec", inputs, values)
    with torch.no_grad():  # non-zero biases, so that a misplaced bias would show
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.5)
    return model


def batch(inputs: ModelInputs, size: int = 9):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    users = torch.from_numpy(inputs.train_users)[rows]
    pos = torch.from_numpy(inputs.train_items)[rows]
    neg = torch.randint(N_ITEMS, (size,), generator=gen)
    return users, pos, neg


# --- dense float64 references, written from MMRec's SLMRec independently of the package ----------


def dense_adjacency(inputs: ModelInputs, adj_type: str) -> np.ndarray:
    """MMRec create_adj_mat, dense float64: A the binary (users + items) graph, D its row sums."""
    n = N_USERS + N_ITEMS
    adj = np.zeros((n, n))
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, N_USERS + i] = adj[N_USERS + i, u] = 1.0

    def row_normalised(mat):
        rowsum = mat.sum(1)
        inv = np.zeros(n)
        inv[rowsum > 0] = 1.0 / rowsum[rowsum > 0]
        return inv[:, None] * mat

    if adj_type == "plain":
        return adj
    if adj_type == "norm":
        return row_normalised(adj + np.eye(n))
    if adj_type == "gcmc":
        return row_normalised(adj)
    if adj_type == "pre":
        d = adj.sum(1) + 1e-8
        return adj / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    return row_normalised(adj) + np.eye(n)  # 'mean'


# MMRec's parameter names -> ours (MMRec's g_v_iv and g_t_ivat have a bias, ours none; g_a_iva unused)
MMREC_NAMES = {
    "embedding_user.weight": "user_emb",
    "embedding_item.weight": "item_emb",
    "v_dense.weight": "feat_proj.image.weight",
    "v_dense.bias": "feat_proj.image.bias",
    "t_dense.weight": "feat_proj.text.weight",
    "t_dense.bias": "feat_proj.text.bias",
    "embedding_user_after_GCN.weight": "user_fusion.weight",
    "embedding_user_after_GCN.bias": "user_fusion.bias",
    "embedding_item_after_GCN.weight": "item_fusion.weight",
    "embedding_item_after_GCN.bias": "item_fusion.bias",
    "g_i_iv.weight": "fac_id_fine.weight",
    "g_i_iv.bias": "fac_id_fine.bias",
    "g_v_iv.weight": "fac_feat_fine.weight",
    "g_iv_iva.weight": "fac_id_mid.weight",
    "g_iv_iva.bias": "fac_id_mid.bias",
    "g_iva_ivat.weight": "fac_id_coarse.weight",
    "g_iva_ivat.bias": "fac_id_coarse.bias",
    "g_t_ivat.weight": "fac_feat_coarse.weight",
}


def float64_parameters(model, extra_biases: bool) -> dict[str, torch.Tensor]:
    """MMRec's parameter names -> float64 leaf copies of ours. With `extra_biases`, the two heads
    we build without bias (g_v_iv, g_t_ivat) get a random, constant one, as MMRec has a bias there."""
    ours = dict(model.named_parameters())
    params = {k: ours[v].detach().double().clone().requires_grad_() for k, v in MMREC_NAMES.items() if v in ours}
    if extra_biases:
        gen = torch.Generator().manual_seed(7)
        for head in ("g_v_iv", "g_t_ivat"):
            if f"{head}.weight" in params:
                params[f"{head}.bias"] = torch.randn(params[f"{head}.weight"].shape[0], generator=gen).double()
    return params


def linear(params, name, x):
    out = x @ params[f"{name}.weight"].T
    return out + params[f"{name}.bias"] if f"{name}.bias" in params else out


def mmrec_compute(params, inputs, adj, n_layers, modalities):
    """MMRec compute(): one LightGCN per view (same user IDs), concat, the two fusion layers.
    Returns (users, items, {view: item rows of that view's propagation})."""
    a = torch.from_numpy(adj)

    def compute_graph(u_emb, i_emb):
        all_emb = torch.cat([u_emb, i_emb])
        embs = [all_emb]
        for _ in range(n_layers):
            all_emb = a @ all_emb
            embs.append(all_emb)
        return torch.stack(embs, dim=1).mean(dim=1)

    users_emb = params["embedding_user.weight"]
    views = {"i": compute_graph(users_emb, params["embedding_item.weight"])}
    feats = {"v": ("v_dense", inputs.image_feat), "t": ("t_dense", inputs.text_feat)}
    for key in modalities:  # MMRec's order: v (image), then t (text)
        dense, feat = feats[key]
        views[key] = compute_graph(users_emb, linear(params, dense, F.normalize(feat.double(), dim=1)))
    user = linear(params, "embedding_user_after_GCN", torch.cat([v[:N_USERS] for v in views.values()], dim=1))
    item = linear(params, "embedding_item_after_GCN", torch.cat([v[N_USERS:] for v in views.values()], dim=1))
    return user, item, {k: v[N_USERS:] for k, v in views.items()}


def cross_entropy_diagonal(logits):
    """nn.CrossEntropyLoss()(logits, arange(B)) written out: mean of logsumexp - diagonal."""
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def mmrec_calculate_loss(params, inputs, adj, config, users, pos, modalities=("v", "t")):
    """MMRec calculate_loss = infonce(users, pos) + ssl_alpha * fac(pos), float64."""
    user, item, item_views = mmrec_compute(params, inputs, adj, config["layer_num"], modalities)
    u, p = F.normalize(user[users], dim=1), F.normalize(item[pos], dim=1)
    main = cross_entropy_diagonal(u @ p.T / config["temp"])
    first, *second = modalities
    x_i_iv = linear(params, "g_i_iv", item_views["i"][pos])
    x_v_iv = linear(params, "g_v_iv", item_views[first][pos])
    ssl = cross_entropy_diagonal(x_i_iv @ x_v_iv.T / config["ssl_temp"])
    if second:
        x_iva_ivat = linear(params, "g_iva_ivat", linear(params, "g_iv_iva", x_i_iv))
        x_t_ivat = linear(params, "g_t_ivat", item_views[second[0]][pos])
        ssl = ssl + cross_entropy_diagonal(x_iva_ivat @ x_t_ivat.T / config["ssl_temp"])
    return main + config["ssl_alpha"] * ssl


# --- the model against the references ------------------------------------------------------------


def stored_adjacency(model) -> np.ndarray:
    """The (users + items) adjacency the model keeps: whole, or as its two off-diagonal blocks."""
    if model.norm_adj is not None:
        return model.norm_adj.to_dense().double().numpy()
    adj = np.zeros((N_USERS + N_ITEMS,) * 2)
    adj[:N_USERS, N_USERS:] = model.user_item.to_dense().double().numpy()
    adj[N_USERS:, :N_USERS] = model.item_user.to_dense().double().numpy()
    return adj


@pytest.mark.parametrize("adj_type", ADJ_TYPES)
def test_adjacency_matches_dense_reference(adj_type):
    inputs = tiny_inputs()
    model = tiny_model(inputs, adj_type=adj_type)
    expected = dense_adjacency(inputs, adj_type)
    np.testing.assert_allclose(stored_adjacency(model), expected, atol=1e-6)
    bipartite = adj_type in ("pre", "plain", "gcmc")  # no self-loops: the blocks suffice
    assert (model.norm_adj is None) == bipartite and (model.user_item is not None) == bipartite
    if adj_type in ("pre", "plain"):  # symmetric: each block is the other's transpose
        assert model.norm_adj_t is None and model.user_item_t is None and model.item_user_t is None
        assert torch.equal(model.item_user.to_dense(), model.user_item.to_dense().T)
    elif bipartite:
        assert torch.equal(model.user_item_t.to_dense(), model.user_item.to_dense().T)
        assert torch.equal(model.item_user_t.to_dense(), model.item_user.to_dense().T)
    else:
        np.testing.assert_allclose(model.norm_adj_t.to_dense().double().numpy(), expected.T, atol=1e-6)


@pytest.mark.parametrize(
    ("adj_type", "layer_num"), [(t, 2) for t in ADJ_TYPES] + [("pre", 0), ("pre", 1), ("pre", 3), ("norm", 3)]
)
def test_eval_embeddings_match_mmrec_compute(adj_type, layer_num):
    inputs = tiny_inputs()
    model = tiny_model(inputs, adj_type=adj_type, layer_num=layer_num)
    params = float64_parameters(model, extra_biases=False)
    user, item, views = mmrec_compute(params, inputs, dense_adjacency(inputs, adj_type), layer_num, ("v", "t"))
    emb = model.eval_embeddings()
    assert torch.allclose(emb.users.double(), user, atol=1e-5)
    assert torch.allclose(emb.items.double(), item, atol=1e-5)
    assert torch.allclose(emb.extras["item_views"].double(), torch.cat(list(views.values()), dim=1), atol=1e-5)
    assert torch.allclose(model.scores(emb, torch.tensor([2])).double(), user[2] @ item.T, atol=1e-5)


@pytest.mark.parametrize(
    ("text", "image", "modalities"),
    [(True, True, ("v", "t")), (False, True, ("v",)), (True, False, ("t",))],
    ids=["both", "image-only (MMRec's kwai branch)", "text-only"],
)
@pytest.mark.parametrize("adj_type", ["pre", "gcmc", "norm"])
def test_loss_and_gradients_match_mmrec_calculate_loss(text, image, modalities, adj_type):
    """loss = mean(sample_losses) + regularization equals MMRec's calculate_loss (infonce +
    ssl_alpha * FAC) for the same parameters and batch, with MMRec's extra biases on g_v_iv and
    g_t_ivat (they cancel), and so do the gradients of every parameter."""
    inputs = tiny_inputs(text=text, image=image)
    model = tiny_model(inputs, adj_type=adj_type)
    users, pos, neg = batch(inputs)
    loss = model.loss(users, pos, neg)
    loss.backward()
    params = float64_parameters(model, extra_biases=True)
    config = default_hparams("slmrec") | {"layer_num": 2, "ssl_alpha": 0.7, "ssl_temp": 0.3, "temp": 0.4}
    expected = mmrec_calculate_loss(params, inputs, dense_adjacency(inputs, adj_type), config, users, pos, modalities)
    expected.backward()
    assert torch.isclose(loss.double(), expected, atol=1e-5), (loss, expected)
    ours = dict(model.named_parameters())
    assert set(ours) == {MMREC_NAMES[k] for k in params if k in MMREC_NAMES}  # every parameter compared
    for mmrec_name, our_name in MMREC_NAMES.items():
        if our_name in ours:
            assert torch.allclose(ours[our_name].grad.double(), params[mmrec_name].grad, atol=1e-5), mmrec_name


def test_fac_is_id_view_against_modality_views_in_batch():
    """FAC by hand on given views: fine space ID vs image, coarse space (recdim // 2) ID vs text."""
    inputs = tiny_inputs()
    model = tiny_model(inputs, ssl_temp=0.5)
    views = torch.randn(5, 3 * 8, generator=torch.Generator().manual_seed(3))  # [B, 3 d]: ID, image, text
    id_view, image_view, text_view = views.double().split(8, dim=1)

    def ce_rows(a, b):
        logits = a @ b.T / 0.5
        return torch.logsumexp(logits, dim=1) - logits.diagonal()

    def lin(layer, x):
        out = x @ layer.weight.double().T
        return out if layer.bias is None else out + layer.bias.double()

    with torch.no_grad():
        anchor = lin(model.fac_id_fine, id_view)
        expected = ce_rows(anchor, lin(model.fac_feat_fine, image_view))
        coarse = lin(model.fac_id_coarse, lin(model.fac_id_mid, anchor))
        assert coarse.shape == (5, 4)
        expected = expected + ce_rows(coarse, lin(model.fac_feat_coarse, text_view))
        assert torch.allclose(model.fac_losses(views).double(), expected, atol=1e-5)


def test_negatives_are_ignored_and_per_sample_mean_is_the_loss():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    users, pos, neg = batch(inputs)
    emb = model.eval_embeddings()
    per_sample = model.sample_losses(emb, users, pos, neg)
    assert per_sample.shape == (len(users),)
    assert torch.equal(per_sample, model.sample_losses(emb, users, pos, torch.zeros_like(neg)))
    assert float(model.regularization(emb, users, pos, neg)) == 0.0
    assert torch.isclose(model.loss(users, pos, neg, emb=emb), per_sample.mean())
    assert not get_class("slmrec").needs_negatives and get_class("slmrec").train_propagate_equals_eval


def test_single_modality_builds_only_the_heads_it_uses():
    for text, image, feature in ((True, False, "text"), (False, True, "image")):
        model = tiny_model(tiny_inputs(text=text, image=image))
        assert list(model.feat_proj) == [feature]
        assert model.user_fusion.in_features == 2 * 8
        assert not hasattr(model, "fac_id_mid") and not hasattr(model, "fac_feat_coarse")
    with pytest.raises(ValueError, match="features"):
        tiny_model(tiny_inputs(text=False, image=False))


def test_frozen_inputs_stay_out_of_checkpoints():
    model = tiny_model(tiny_inputs())
    keys = set(model.state_dict())
    assert not keys & {"norm_adj", "user_item", "item_user", "image_feat", "text_feat"}
    assert {"user_emb", "item_emb", "feat_proj.image.weight", "fac_id_coarse.bias"} <= keys
    assert not any(p is model.image_feat for p in model.parameters())


# --- config ----------------------------------------------------------------------------------------

# MMRec src/configs/model/SLMRec.yaml, written out: single values as given, grids as their first value
MMREC_SLMREC = {
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
}


def test_config_defaults_grid_and_train_defaults_are_mmrecs():
    assert default_hparams("slmrec") == pytest.approx(MMREC_SLMREC)
    grid = get_class("slmrec").Config.grid
    assert grid == {
        "train.lr": (1e-4, 1e-3, 1e-2, 0.1),
        "model.ssl_temp": (0.1, 0.2, 0.5, 1.0),
        "model.ssl_alpha": (0.01, 0.05, 0.1, 0.5, 1.0),
        "model.reg": (1e-4, 1e-3, 1e-2, 0.1),
    }
    train_config = resolve_run_config("slmrec").train
    assert train_config.weight_decay == 1e-4 and train_config.lr == 1e-3
    assert resolve_run_config("lightgcn").train.weight_decay == 0.0
    assert get_class("slmrec").display_name == "SLMRec"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ssl_task", "FD", "must be one of FAC"),
        ("mm_fusion_mode", "mean", "must be one of concat"),
        ("init", "normal", "must be one of xavier"),
        ("adj_type", "bogus", "must be one of pre, plain, norm, gcmc, mean"),
        ("recdim", 1, "must be >= 2"),
        ("layer_num", -1, "must be >= 0"),
        ("ssl_temp", 0.0, "must be > 0"),
        ("temp", -0.2, "must be > 0"),
        ("ssl_alpha", -1.0, "must be >= 0"),
        ("dropout_rate", 1.0, "must be < 1"),
        ("reg", -1e-4, "must be >= 0"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"model\.{key} {message}"):
        resolve_run_config("slmrec", overrides={"model": {key: value}})


# --- training (determinism, resume and GUIDER: tests/test_backbone_training.py) -----------------


def test_a_run_records_slmrecs_weight_decay(tiny_folder, tmp_path):
    train(tiny_folder, tmp_path / "a", "slmrec", device="cpu", progress=False, epochs=1, sets=("train.batch_size=64",))
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["train"]["weight_decay"] == 1e-4
