"""Backbones: the shared protocol for every registered model, plus model-specific references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_inputs

from guider.models import ModelInputs, available, build_model, default_hparams, get_class
from guider.models.graph import knn_graph, knn_neighbours, sym_normalize

N_USERS, N_ITEMS, D_TEXT, D_IMAGE = 9, 13, 7, 5
SMALL = {
    "embedding_size": 8,
    "recdim": 8,
    "knn_k": 3,
    "image_knn_k": 3,
    "text_knn_k": 3,
}  # applied where a backbone has the hyper-parameter
FEATURE_SETS = {"both": (True, True), "text": (True, False), "image": (False, True)}


def make_inputs(text: bool = True, image: bool = True, seed: int = 0) -> ModelInputs:
    """Tiny random train set: every user has 3-5 items, one pair duplicated, one item unseen."""
    return random_inputs(N_USERS, N_ITEMS, D_TEXT, D_IMAGE, text=text, image=image, seed=seed)


def small_model(name: str, inputs: ModelInputs, seed: int = 0, **extra):
    torch.manual_seed(seed)
    hparams = default_hparams(name)
    overrides = {k: v for k, v in SMALL.items() if k in hparams} | extra
    model = build_model(name, inputs, overrides)
    model.on_epoch_start(0, torch.Generator().manual_seed(seed))
    return model


def fixed_batch(inputs: ModelInputs, size: int = 16):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    users = torch.from_numpy(inputs.train_users)[rows]
    pos = torch.from_numpy(inputs.train_items)[rows]
    neg = torch.randint(inputs.n_items, (size,), generator=gen)
    return users, pos, neg


def trainable_names() -> list[str]:
    return [n for n in available() if get_class(n).trainable]


def feature_names() -> list[str]:
    return [n for n in available() if get_class(n).uses_features]


# --- the protocol, for every backbone ------------------------------------------------------


def test_all_expected_backbones_registered():
    assert {
        "pop",
        "bpr",
        "lightgcn",
        "vbpr",
        "freedom",
        "bm3",
        "mmgcn",
        "grcn",
        "dualgnn",
        "lattice",
        "slmrec",
        "dragon",
        "mgcn",
        "lgmrec",
        "smore",
    } <= set(available())


def loss_cases() -> list[tuple[str, str]]:
    """Every trainable backbone with both modalities; feature backbones also with one."""
    return [(n, f) for n in trainable_names() for f in FEATURE_SETS if f == "both" or get_class(n).uses_features]


@pytest.mark.parametrize(("name", "features"), loss_cases())
def test_loss_finite_and_decreases_on_fixed_batch(name, features):
    inputs = make_inputs(*FEATURE_SETS[features])
    model = small_model(name, inputs)
    batch = fixed_batch(inputs)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        loss = model.loss(*batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("name", trainable_names())
def test_sample_losses_shape_and_mean_is_loss(name):
    inputs = make_inputs()
    model = small_model(name, inputs)
    users, pos, neg = fixed_batch(inputs)
    torch.manual_seed(3)
    emb = model.propagate()
    per_sample = model.sample_losses(emb, users, pos, neg)
    assert per_sample.shape == (len(users),)
    torch.manual_seed(3)
    emb = model.propagate()
    expected = model.sample_losses(emb, users, pos, neg).mean() + model.regularization(emb, users, pos, neg)
    torch.manual_seed(3)
    assert torch.allclose(model.loss(users, pos, neg), expected)


# A bias added to both items of a BPR difference cancels: its gradient is exactly zero
# (in MMRec too). Every other parameter must receive a non-zero gradient.
ZERO_GRAD_BY_DESIGN = {"freedom": {"feat_proj.text.bias", "feat_proj.image.bias"}}


@pytest.mark.parametrize("name", trainable_names())
def test_gradients_reach_every_parameter(name):
    inputs = make_inputs()
    model = small_model(name, inputs)
    model.loss(*fixed_batch(inputs)).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        nonzero = bool(param.grad.abs().sum() > 0)
        assert nonzero != (pname in ZERO_GRAD_BY_DESIGN.get(name, set())), pname


@pytest.mark.parametrize("name", available())
def test_scores_shapes_and_candidate_gather(name):
    inputs = make_inputs()
    model = small_model(name, inputs)
    emb = model.eval_embeddings()
    users = torch.tensor([0, 3, 3, 8])
    full = model.scores(emb, users)
    assert full.shape == (4, N_ITEMS)
    candidates = torch.randint(N_ITEMS, (4, 6), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(model.scores(emb, users, candidates), full.gather(1, candidates), atol=1e-6)


@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 5)])
def test_gather_rows_has_the_values_and_gradient_of_plain_indexing(shape):
    """gather_rows (index_select on the flattened index) against table[index]: the same values
    and, with repeated rows, the same accumulated gradient bit for bit, as in a training run
    (deterministic algorithms on)."""
    from guider.models.base import gather_rows

    gen = torch.Generator().manual_seed(0)
    table = torch.randn(7, 5, generator=gen, dtype=torch.float32)
    index = torch.randint(7, shape, generator=gen)
    index.view(-1)[:2] = 3
    upstream = torch.randn(*shape, 5, generator=gen)
    grads, values = [], []
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for gather in (gather_rows, lambda t, i: t[i]):
            leaf = table.clone().requires_grad_(True)
            out = gather(leaf, index)
            (out * upstream).sum().backward()
            values.append(out.detach())
            grads.append(leaf.grad)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert values[0].shape == (*shape, 5)
    assert torch.equal(values[0], values[1])
    assert torch.equal(grads[0], grads[1])
    assert grads[0][3].abs().sum() > 0


@pytest.mark.parametrize("name", available())
def test_item_embeddings_shape(name):
    model = small_model(name, make_inputs())
    items = model.item_embeddings(model.eval_embeddings())
    assert items.dim() == 2 and items.shape[0] == N_ITEMS
    assert model.item_embeddings().shape == items.shape


@pytest.mark.parametrize("name", available())
def test_eval_embeddings_build_no_autograd_graph_and_restore_mode(name):
    model = small_model(name, make_inputs())
    model.train()
    emb = model.eval_embeddings()
    assert not emb.users.requires_grad and not emb.items.requires_grad
    assert emb.users.grad_fn is None and emb.items.grad_fn is None
    assert model.training


@pytest.mark.parametrize("name", available())
def test_the_train_propagate_equals_eval_flag_does_not_lie(name):
    """GUIDER reuses a training forward as the teacher's eval forward when the flag says they
    are the same function; where it is set, a train-mode propagate() must equal eval_embeddings()."""
    model = small_model(name, make_inputs())
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        trained = model.propagate()
    evaluated = model.eval_embeddings()
    same = torch.equal(trained.users, evaluated.users) and torch.equal(trained.items, evaluated.items)
    if get_class(name).train_propagate_equals_eval:
        assert same, f"{name} declares train_propagate_equals_eval but its train and eval forwards differ"


def test_freedom_is_flagged_because_its_train_forward_differs():
    model = small_model("freedom", make_inputs())
    model.train()
    with torch.no_grad():
        trained = model.propagate()
    assert not torch.equal(trained.users, model.eval_embeddings().users)  # pruned graph in training
    assert not get_class("freedom").train_propagate_equals_eval


@pytest.mark.parametrize("name", trainable_names())
def test_same_seed_same_loss(name):
    inputs = make_inputs()
    batch = fixed_batch(inputs)
    losses = []
    for _ in range(2):
        model = small_model(name, inputs, seed=5)
        torch.manual_seed(11)
        losses.append(model.loss(*batch).item())
    other = small_model(name, inputs, seed=6)
    torch.manual_seed(11)
    assert losses[0] == losses[1]
    assert other.loss(*batch).item() != losses[0]


@pytest.mark.parametrize("name", feature_names())
def test_feature_models_reject_featureless_data(name):
    with pytest.raises(ValueError, match="features"):
        small_model(name, make_inputs(text=False, image=False))


@pytest.mark.parametrize("name", [n for n in available() if not get_class(n).uses_features])
def test_id_models_build_without_features(name):
    model = small_model(name, make_inputs(text=False, image=False))
    assert model.scores(model.eval_embeddings(), torch.tensor([1])).shape == (1, N_ITEMS)


@pytest.mark.parametrize("name", feature_names())
def test_feature_models_reject_misshaped_features(name):
    inputs = make_inputs()
    inputs.text_feat = inputs.text_feat[:-1]
    with pytest.raises(ValueError, match="text features have shape"):
        small_model(name, inputs)


# --- LightGCN -------------------------------------------------------------------------------


def naive_sym_norm(inputs: ModelInputs) -> np.ndarray:
    """Dense float64 D^-1/2 A D^-1/2 of the (users + items) graph, degrees + 1e-7."""
    n = inputs.n_users + inputs.n_items
    adj = np.zeros((n, n))
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, inputs.n_users + i] = adj[inputs.n_users + i, u] = 1.0
    deg = adj.sum(1) + 1e-7
    return adj / np.sqrt(deg)[:, None] / np.sqrt(deg)[None, :]


def test_lightgcn_adjacency_matches_dense_reference():
    inputs = make_inputs()
    model = small_model("lightgcn", inputs)
    np.testing.assert_allclose(model.norm_adj.to_dense().double().numpy(), naive_sym_norm(inputs), atol=1e-6)


def test_lightgcn_propagation_is_mean_of_layers():
    inputs = make_inputs()
    model = small_model("lightgcn", inputs, n_layers=2)
    adj = naive_sym_norm(inputs)
    ego = torch.cat([model.user_emb, model.item_emb]).detach().double().numpy()
    expected = (ego + adj @ ego + adj @ adj @ ego) / 3
    emb = model.eval_embeddings()
    np.testing.assert_allclose(torch.cat([emb.users, emb.items]).double().numpy(), expected, atol=1e-5)


# --- FREEDOM --------------------------------------------------------------------------------


def naive_knn_graph(features: torch.Tensor, k: int) -> np.ndarray:
    """Dense float64: A[i, j] = 1 for the k most cosine-similar j (self included), normalised."""
    x = features.double().numpy()
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    adj = np.zeros_like(sim)
    for i in range(len(sim)):
        adj[i, np.argsort(-sim[i])[:k]] = 1.0
    deg = adj.sum(1) + 1e-7
    return adj / np.sqrt(deg)[:, None] / np.sqrt(deg)[None, :]


@pytest.mark.parametrize("block_rows", [None, 1, 4])
def test_knn_adjacency_matches_dense_reference(block_rows, monkeypatch):
    import guider.models.graph as graph

    if block_rows:
        monkeypatch.setattr(graph, "_BLOCK_ELEMENTS", block_rows * N_ITEMS)
    features = torch.randn(N_ITEMS, 6, generator=torch.Generator().manual_seed(4))
    got = sym_normalize(knn_graph(features, 4)).to_dense().double().numpy()
    np.testing.assert_allclose(got, naive_knn_graph(features, 4), atol=1e-6)


def test_knn_rejects_bad_k():
    with pytest.raises(ValueError, match="knn_k"):
        knn_neighbours(torch.randn(5, 3), 6)


def test_freedom_item_graph_mixes_modalities():
    inputs = make_inputs()
    model = small_model("freedom", inputs, mm_image_weight=0.3)
    expected = 0.3 * naive_knn_graph(inputs.image_feat, 3) + 0.7 * naive_knn_graph(inputs.text_feat, 3)
    np.testing.assert_allclose(model.mm_adj.to_dense().double().numpy(), expected, atol=1e-6)
    text_only = small_model("freedom", make_inputs(image=False))
    np.testing.assert_allclose(
        text_only.mm_adj.to_dense().double().numpy(), naive_knn_graph(inputs.text_feat, 3), atol=1e-6
    )


def test_freedom_pruned_graph_is_renormalised_subgraph():
    inputs = make_inputs()
    model = small_model("freedom", inputs, dropout=0.4)
    model.on_epoch_start(1, torch.Generator().manual_seed(9))
    dense = model.masked_adj.to_dense().double().numpy()
    n_edges = model.edge_users.numel()
    kept = (dense[:N_USERS, N_USERS:] != 0).astype(float)  # [U, I] kept edges
    assert kept.sum() == int(n_edges * 0.6)
    full = naive_sym_norm(inputs)[:N_USERS, N_USERS:] != 0
    assert np.all(full[kept > 0])  # only train edges survive
    deg_u, deg_i = kept.sum(1) + 1e-7, kept.sum(0) + 1e-7
    expected = kept / np.sqrt(deg_u)[:, None] / np.sqrt(deg_i)[None, :]
    np.testing.assert_allclose(dense[:N_USERS, N_USERS:], expected, atol=1e-6)
    np.testing.assert_allclose(dense, dense.T, atol=0)
    assert np.all(dense[:N_USERS, :N_USERS] == 0) and np.all(dense[N_USERS:, N_USERS:] == 0)


def test_freedom_pruning_is_seeded_and_degree_sensitive():
    inputs = make_inputs()
    model = small_model("freedom", inputs, dropout=0.5)

    def sample(seed):
        return model.sample_pruned_graph(torch.Generator().manual_seed(seed)).to_dense()

    assert torch.equal(sample(1), sample(1))
    assert not torch.equal(sample(1), sample(2))
    weights = model.edge_keep_weight  # 1/sqrt(d_u d_i): largest between low-degree nodes
    low_degree, high_degree = int(weights.argmax()), int(weights.argmin())
    assert weights[low_degree] > 1.5 * weights[high_degree]
    u, i = model.edge_users, model.edge_items + N_USERS
    kept = {low_degree: 0, high_degree: 0}
    for seed in range(300):
        graph = sample(seed)
        for edge in kept:
            kept[edge] += bool(graph[u[edge], i[edge]] != 0)
    # Uniform pruning would give equal counts (difference sd ~ 12 over 300 draws of p=0.5).
    assert kept[low_degree] > kept[high_degree] + 40, kept


def test_freedom_eval_uses_full_graph_training_uses_pruned():
    inputs = make_inputs()
    model = small_model("freedom", inputs, dropout=0.5)
    first = model.eval_embeddings()
    model.on_epoch_start(1, torch.Generator().manual_seed(123))
    second = model.eval_embeddings()
    assert torch.equal(first.users, second.users) and torch.equal(first.items, second.items)
    with torch.no_grad():
        train_emb = model.propagate()
    assert not torch.allclose(train_emb.users, first.users)


def test_freedom_eval_embeddings_match_dense_reference():
    inputs = make_inputs()
    model = small_model("freedom", inputs)  # n_ui_layers 2, n_mm_layers 1
    adj = naive_sym_norm(inputs)
    ego = torch.cat([model.user_emb, model.item_emb]).detach().double().numpy()
    ui = (ego + adj @ ego + adj @ adj @ ego) / 3
    item_graph = 0.1 * naive_knn_graph(inputs.image_feat, 3) + 0.9 * naive_knn_graph(inputs.text_feat, 3)
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.users.double().numpy(), ui[:N_USERS], atol=1e-5)
    expected_items = ui[N_USERS:] + item_graph @ model.item_emb.detach().double().numpy()
    np.testing.assert_allclose(emb.items.double().numpy(), expected_items, atol=1e-5)


def test_freedom_sample_losses_add_weighted_modality_bpr():
    inputs = make_inputs()
    model = small_model("freedom", inputs, reg_weight=0.3)
    users, pos, neg = fixed_batch(inputs)
    emb = model.eval_embeddings()
    u = emb.users[users].double()

    def bpr(p, n):
        return -torch.log(torch.sigmoid((u * p).sum(1) - (u * n).sum(1)))

    with torch.no_grad():
        expected = bpr(emb.items[pos].double(), emb.items[neg].double())
        for m, feat in (("text", inputs.text_feat), ("image", inputs.image_feat)):
            proj = model.feat_proj[m](feat).double()
            expected += 0.3 * bpr(proj[pos], proj[neg])
        got = model.sample_losses(emb, users, pos, neg)
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_freedom_needs_on_epoch_start_before_training():
    torch.manual_seed(0)
    model = build_model("freedom", make_inputs(), {"embedding_size": 8, "knn_k": 3})
    with pytest.raises(RuntimeError, match="on_epoch_start"):
        model.propagate()


def test_freedom_rejects_dropout_out_of_range():
    with pytest.raises(ValueError, match="dropout"):
        small_model("freedom", make_inputs(), dropout=1.0)


# --- VBPR -----------------------------------------------------------------------------------


def test_vbpr_item_is_id_embedding_concat_linear_features():
    inputs = make_inputs()
    model = small_model("vbpr", inputs)
    raw = torch.cat([inputs.text_feat, inputs.image_feat], dim=1)  # text first, as MMRec
    weight, bias = model.item_linear.weight.detach(), model.item_linear.bias.detach()
    expected = torch.cat([model.item_emb.detach(), raw @ weight.T + bias], dim=1)
    emb = model.eval_embeddings()
    assert torch.allclose(emb.items, expected, atol=1e-6)
    assert emb.users.shape == (N_USERS, 2 * SMALL["embedding_size"])
    assert torch.allclose(model.scores(emb, torch.tensor([2])), emb.users[2] @ expected.T, atol=1e-6)


def test_vbpr_loss_is_bpr_plus_emb_norm():
    inputs = make_inputs()
    model = small_model("vbpr", inputs, reg_weight=0.5)
    users, pos, neg = fixed_batch(inputs)
    emb = model.eval_embeddings()
    u, p, n = emb.users[users].double(), emb.items[pos].double(), emb.items[neg].double()
    bpr = -torch.log(1e-10 + torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    reg = (u.norm() + p.norm() + n.norm()) / len(users)
    with torch.no_grad():
        assert torch.isclose(model.loss(users, pos, neg, emb=emb).double(), bpr + 0.5 * reg, atol=1e-5)


# --- BM3 ------------------------------------------------------------------------------------


def test_bm3_scores_use_the_predictor():
    model = small_model("bm3", make_inputs())
    emb = model.eval_embeddings()
    w, b = model.predictor.weight.detach(), model.predictor.bias.detach()
    assert torch.allclose(emb.users, emb.extras["users_online"] @ w.T + b, atol=1e-6)
    assert torch.allclose(emb.items, emb.extras["items_online"] @ w.T + b, atol=1e-6)


def test_bm3_ignores_negatives_and_matches_hand_computation_without_dropout():
    inputs = make_inputs()
    model = small_model("bm3", inputs, dropout=0.0, cl_weight=0.7)
    users, pos, neg = fixed_batch(inputs)
    emb = model.eval_embeddings()
    got = model.sample_losses(emb, users, pos, neg)
    assert torch.equal(got, model.sample_losses(emb, users, pos, torch.zeros_like(neg)))
    u_on, i_on = emb.extras["users_online"].double(), emb.extras["items_online"].double()
    pred = model.predictor.double()

    def cos_loss(a, b):
        return 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))

    with torch.no_grad():
        expected = cos_loss(pred(u_on[users]), i_on[pos]) + cos_loss(pred(i_on[pos]), u_on[users])
        for m, feat in (("text", inputs.text_feat), ("image", inputs.image_feat)):
            f = model.feat_proj[m].double()(feat.double()[pos])
            expected += 0.7 * (cos_loss(pred(f), i_on[pos]) + cos_loss(pred(f), f))
    assert torch.allclose(got.double(), expected, atol=1e-5)
    reg = model.regularization(emb, users, pos, neg)
    assert torch.isclose(reg.double(), 0.1 * (u_on.norm() + i_on.norm()) / N_ITEMS, atol=1e-6)


def test_bm3_target_dropout_is_on_even_in_eval_mode():
    inputs = make_inputs()
    model = small_model("bm3", inputs, dropout=0.5)
    emb = model.eval_embeddings()
    batch = fixed_batch(inputs)
    torch.manual_seed(1)
    first = model.sample_losses(emb, *batch)
    torch.manual_seed(2)
    assert not torch.allclose(first, model.sample_losses(emb, *batch))
    torch.manual_seed(1)
    assert torch.equal(first, model.sample_losses(emb, *batch))
