"""GRCN: refined edge weights and convolutions against a dense float64 reference, MMRec's
loss, custom backward passes, seeded training, resume, GUIDER wrapping, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_dataset, random_inputs

import guider.models.grcn  # noqa: F401  (registers the backbone)
from guider.config.sections import ConfigError
from guider.data import save_dataset
from guider.engine.trainer import train
from guider.models import ModelInputs, build_model, default_hparams, get_class, model_config
from guider.models.grcn import BipartiteEdges

SMALL = {"embedding_size": 6, "latent_embedding": 5}
N_USERS, N_ITEMS = 9, 13


# Own helpers: importing tests/test_models.py from here would fix its parametrisations
# before this backbone (or any registered after it) is registered.
def make_inputs(text: bool = True, image: bool = True, seed: int = 0) -> ModelInputs:
    return random_inputs(N_USERS, N_ITEMS, 7, 5, text=text, image=image, seed=seed)


def grcn(inputs, seed=0, **extra):
    torch.manual_seed(seed)
    return build_model("grcn", inputs, SMALL | extra)


def fixed_batch(inputs: ModelInputs, size: int = 16):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    neg = torch.randint(inputs.n_items, (size,), generator=gen)
    return torch.from_numpy(inputs.train_users)[rows], torch.from_numpy(inputs.train_items)[rows], neg


# --- dense float64 reference of MMRec's GRCN ------------------------------------------------


def _d(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _masked_softmax(scores: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    """Softmax of the masked entries along `axis` (PyG: + 1e-16 in the denominator), 0 elsewhere."""
    peak = np.where(mask, scores, -np.inf).max(axis=axis, keepdims=True)
    exp = np.where(mask, np.exp(scores - np.where(np.isfinite(peak), peak, 0.0)), 0.0)
    return exp / (exp.sum(axis=axis, keepdims=True) + 1e-16)


def reference(model, inputs):
    """MMRec's GRCN.forward in dense float64: (representation [U+I, d], W_ui [U, I], W_iu [U, I]).

    W_ui[u, i] weighs the message u -> i (received by item i), W_iu[u, i] the message i -> u."""
    n_u, n_i = inputs.n_users, inputs.n_items
    cfg = model.config
    adj = np.zeros((n_u, n_i), dtype=bool)
    adj[inputs.train_users, inputs.train_items] = True
    feats = {"image": inputs.image_feat, "text": inputs.text_feat}
    modalities = [m for m in ("image", "text") if feats[m] is not None]  # MMRec: v_gcn first
    reps, w_ui, w_iu = [], [], []
    for m in modalities:
        proj = model.feat_proj[m]
        content = _d(feats[m]) @ _d(proj.weight).T + _d(proj.bias)
        content = _normalize(np.where(content > 0, content, 0.01 * content))  # leaky_relu
        pref = _normalize(_d(model.preference[m]))
        for _ in range(cfg.n_layers):  # routing: messages users -> items, summed at the targets (items)
            x = np.concatenate([pref, content])
            to_item = _masked_softmax(pref @ content.T, adj, axis=0)  # [U, I] softmax over each item's users
            messages = np.zeros((n_u + n_i, n_u + n_i))
            messages[n_u:, :n_u] = to_item.T
            pref = _normalize(pref + (messages @ x)[:n_u])
        scores = pref @ content.T  # [U, I]
        to_item = _masked_softmax(scores, adj, axis=0)
        to_user = _masked_softmax(scores, adj, axis=1)
        reps.append(np.concatenate([pref + to_user @ content, content + to_item.T @ pref]))
        w_ui.append(to_item)
        w_iu.append(to_user)
    w_ui, w_iu = np.stack(w_ui, -1), np.stack(w_iu, -1)  # [U, I, M]
    if cfg.weight_mode == "mean":
        w_ui, w_iu = w_ui.mean(-1), w_iu.mean(-1)
    else:
        if cfg.weight_mode == "confid":
            conf = _d(model.confidence)
            w_ui = w_ui * conf[:n_u][:, None, :]  # sender u's confidence
            w_iu = w_iu * conf[n_u:][None, :, :]  # sender i's confidence
        w_ui, w_iu = w_ui.max(-1), w_iu.max(-1)
    if cfg.pruning:
        w_ui, w_iu = np.maximum(w_ui, 0), np.maximum(w_iu, 0)
    w_ui, w_iu = w_ui * adj, w_iu * adj  # non-edges carry nothing
    graph = np.zeros((n_u + n_i, n_u + n_i))  # graph[target, source]
    graph[n_u:, :n_u] = w_ui.T
    graph[:n_u, n_u:] = w_iu
    x = _normalize(_d(model.id_embedding))
    id_rep = x + graph @ x + graph @ (graph @ x)
    rep = id_rep if cfg.fusion_mode == "id" else np.concatenate([id_rep, *reps], axis=1)
    return rep, w_ui, w_iu


def reference_loss(model, inputs, users, pos, neg):
    """MMRec's GRCN.calculate_loss in float64, written as MMRec writes it."""
    n_u = inputs.n_users
    rep = torch.from_numpy(reference(model, inputs)[0])
    user_tensor = users.repeat_interleave(2)
    item_tensor = torch.stack((pos + n_u, neg + n_u)).t().contiguous().view(-1)
    score = torch.sum(rep[user_tensor] * rep[item_tensor], dim=1).view(-1, 2)
    loss = -torch.mean(torch.log(torch.sigmoid(score @ torch.tensor([[1.0], [-1.0]], dtype=torch.float64))))
    ids = model.id_embedding.detach().double()
    reg_embedding = (ids[user_tensor] ** 2 + ids[item_tensor] ** 2).mean()
    prefs = {m: p.detach().double() for m, p in model.preference.items()}
    if "image" in prefs:
        reg_embedding = reg_embedding + (prefs["image"] ** 2).mean()
    reg_content = sum((p[user_tensor] ** 2).mean() for p in prefs.values())
    return loss + model.config.reg_weight * (reg_embedding + reg_content)


def dense_edges(model, values: torch.Tensor) -> np.ndarray:
    out = np.zeros((model.n_users, model.n_items))
    out[model.edges.users.numpy(), model.edges.items.numpy()] = _d(values)
    return out


@pytest.mark.parametrize("features", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize(
    "modes",
    [{}, {"weight_mode": "max"}, {"weight_mode": "mean"}, {"pruning": False}, {"fusion_mode": "id"}, {"n_layers": 0}],
)
def test_refined_weights_and_convolutions_match_dense_reference(features, modes):
    inputs = make_inputs(*features)
    model = grcn(inputs, **modes)
    with torch.no_grad():  # confidences of both signs, so that pruning and max matter
        model.confidence.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    rep, w_ui, w_iu = reference(model, inputs)
    emb = model.eval_embeddings()
    np.testing.assert_allclose(dense_edges(model, emb.extras["to_items"]), w_ui, atol=1e-6)
    np.testing.assert_allclose(dense_edges(model, emb.extras["to_users"]), w_iu, atol=1e-6)
    np.testing.assert_allclose(_d(emb.users), rep[: inputs.n_users], atol=1e-5)
    np.testing.assert_allclose(_d(emb.items), rep[inputs.n_users :], atol=1e-5)
    if modes.get("weight_mode", "confid") == "confid":  # the case is not trivial: some edges pruned
        edge = dense_edges(model, torch.ones(model.edges.users.numel())) > 0
        signed = np.concatenate([w_ui[edge], w_iu[edge]])
        assert (signed == 0).any() if modes.get("pruning", True) else (signed < 0).any()


def test_duplicated_interactions_are_one_edge():
    inputs = make_inputs()
    model = grcn(inputs)
    assert model.edges.users.numel() == inputs.train_matrix().nnz < len(inputs.train_users)


@pytest.mark.parametrize("features", [(True, True), (True, False), (False, True)])
def test_loss_matches_mmrec_calculate_loss(features):
    inputs = make_inputs(*features)
    model = grcn(inputs, reg_weight=0.7)
    users, pos, neg = fixed_batch(inputs)
    expected = reference_loss(model, inputs, users, pos, neg)
    with torch.no_grad():
        got = model.loss(users, pos, neg)
        per_sample = model.sample_losses(model.propagate(), users, pos, neg)
    assert torch.isclose(got.double(), expected, atol=1e-5), (got, expected)
    assert per_sample.shape == users.shape and bool((per_sample > 0).all())


def test_sparse_products_have_correct_gradients():
    inputs = make_inputs()
    train_mat = inputs.train_matrix().tocoo()
    edges = BipartiteEdges(train_mat.row, train_mat.col, inputs.n_users, inputs.n_items, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    values, user_x, item_x = rand(edges.users.numel()), rand(inputs.n_users, 3), rand(inputs.n_items, 3)
    assert torch.autograd.gradcheck(edges.to_users, (values, item_x), fast_mode=True)
    assert torch.autograd.gradcheck(edges.to_items, (values, user_x), fast_mode=True)
    assert torch.autograd.gradcheck(edges.dot, (user_x, item_x), fast_mode=True)


def test_end_to_end_gradient_matches_dense_autograd():
    """The whole loss's gradient (custom sparse backward passes) against plain dense autograd."""
    inputs = make_inputs()
    model = grcn(inputs).double()
    users, pos, neg = fixed_batch(inputs)
    model.loss(users, pos, neg).backward()
    got = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    adj = torch.zeros(inputs.n_users, inputs.n_items, dtype=torch.bool)
    adj[inputs.train_users, inputs.train_items] = True

    def softmax(scores, axis):
        masked = scores.masked_fill(~adj, float("-inf"))
        peak = masked.max(dim=axis, keepdim=True).values.detach()
        exp = torch.where(adj, scores - peak, float("-inf")).exp()  # no gradient through non-edges
        return exp / (exp.sum(dim=axis, keepdim=True) + 1e-16)

    parts, w_ui, w_iu = [], [], []
    for col, m in enumerate(model.modalities):
        content = torch.nn.functional.leaky_relu(model.feat_proj[m](getattr(model, f"raw_{m}")))
        content = torch.nn.functional.normalize(content)
        pref = torch.nn.functional.normalize(model.preference[m])
        for _ in range(model.config.n_layers):
            pref = torch.nn.functional.normalize(pref)
        to_item, to_user = softmax(pref @ content.T, 0), softmax(pref @ content.T, 1)
        parts.append(torch.cat([pref + to_user @ content, content + to_item.T @ pref]))
        w_ui.append(to_item * model.confidence[: inputs.n_users, col : col + 1])
        w_iu.append(to_user * model.confidence[inputs.n_users :, col].unsqueeze(0))
    w_ui, w_iu = torch.relu(torch.stack(w_ui).max(0).values), torch.relu(torch.stack(w_iu).max(0).values)
    n = inputs.n_users + inputs.n_items
    graph = torch.zeros(n, n, dtype=torch.float64)
    graph[inputs.n_users :, : inputs.n_users] = w_ui.T
    graph[: inputs.n_users, inputs.n_users :] = w_iu
    x = torch.nn.functional.normalize(model.id_embedding)
    rep = torch.cat([x + graph @ x + graph @ graph @ x, *parts], dim=1)
    u, p, q = rep[users], rep[inputs.n_users + pos], rep[inputs.n_users + neg]
    loss = -torch.nn.functional.logsigmoid((u * p).sum(1) - (u * q).sum(1)).mean()
    (loss + model.regularization(None, users, pos, neg)).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(got[name], param.grad, atol=1e-9, rtol=1e-7, msg=lambda text: f"{name}: {text}")


def test_n_layers_changes_nothing_as_in_mmrec():
    """MMRec's routing messages land on the items (the dense reference runs them literally for
    n_layers 3 and 0), so its num_routing = n_layers leaves the model as it is."""
    inputs = make_inputs()
    a, b = grcn(inputs, seed=4, n_layers=0).eval_embeddings(), grcn(inputs, seed=4, n_layers=5).eval_embeddings()
    assert torch.equal(a.users, b.users) and torch.equal(a.items, b.items)


def test_scores_use_the_concatenated_representation():
    inputs = make_inputs()
    model = grcn(inputs)
    emb = model.eval_embeddings()
    assert emb.users.shape == (inputs.n_users, 6 + 2 * 5) and emb.items.shape == (inputs.n_items, 6 + 2 * 5)
    assert torch.allclose(model.scores(emb, torch.tensor([2])), emb.users[2] @ emb.items.T, atol=1e-6)
    assert get_class("grcn").train_propagate_equals_eval and get_class("grcn").needs_negatives


def test_raw_features_and_graph_stay_out_of_checkpoints():
    model = grcn(make_inputs())
    keys = set(model.state_dict())
    assert keys == {
        "id_embedding",
        "confidence",
        "preference.image",
        "preference.text",
        "feat_proj.image.weight",
        "feat_proj.image.bias",
        "feat_proj.text.weight",
        "feat_proj.text.bias",
    }


# --- training -------------------------------------------------------------------------------


def run(folder, out, **kw):
    sets = ("train.batch_size=64", *kw.pop("sets", ()))
    kw.setdefault("epochs", 3)
    return train(folder, out, "grcn", device="cpu", progress=False, sets=sets, **kw)


def test_text_only_dataset_trains(tmp_path):
    ds = make_dataset(n_users=24, n_items=30)
    ds.image_feat = None
    metrics = run(save_dataset(ds, tmp_path / "t"), tmp_path / "r", epochs=1)
    assert np.isfinite(metrics["test"]["recall@20"])


# --- config ---------------------------------------------------------------------------------


def test_config_defaults_are_mmrec_yaml_values_and_grid():
    assert default_hparams("grcn") == {
        "embedding_size": 64,  # GRCN.yaml
        "latent_embedding": 64,  # GRCN.yaml
        "n_layers": 3,  # GRCN.yaml
        "reg_weight": 0.1,  # GRCN.yaml grid, first value
        "weight_mode": "confid",  # grcn.py, hard-coded
        "fusion_mode": "concat",  # grcn.py, hard-coded
        "pruning": True,  # grcn.py, hard-coded
    }
    cls = get_class("grcn").Config
    assert cls.grid == {
        "model.reg_weight": (0.1, 0.01, 0.001, 1e-4, 1e-5),
        "train.lr": (1.0, 0.1, 0.01, 0.001, 1e-4),
    }
    assert cls.train_defaults == {}
    assert get_class("grcn").display_name == "GRCN"


@pytest.mark.parametrize(
    ("key", "value"),
    [("latent_embedding", 0), ("embedding_size", 0), ("n_layers", -1), ("reg_weight", -0.1), ("weight_mode", "sum")],
)
def test_bad_config_value_names_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"model\.{key}"):
        model_config("grcn", {key: value})
