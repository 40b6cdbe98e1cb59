"""DRAGON: the user co-occurrence lists against a naive loop of MMRec's preprocessing script, the
per-epoch sampled user graph against MMRec's topk_sample, the user-user aggregation against a
dense loop, the item kNN graph, the user-item GCN against an edge loop of MMRec's Base_gcn, the
whole forward, loss and gradients against a dense float64 re-implementation of MMRec's DRAGON,
the saved graph, the typed config."""

from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import random_inputs

import guider.models.dragon  # noqa: F401  (registers the backbone)
import guider.models.user_graph
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class

N_USERS, N_ITEMS, D_TEXT, D_IMAGE, DIM = 8, 10, 4, 6, 8
# user 0 and 2 have 4 co-occurring users (ties at count 1), 5 has 2, 7 has 1, 6 none (its only
# item is its own); items 6 and 7 have no edge; (0, 0) is given twice and is one edge
ITEMS_OF = {0: [0, 1, 2, 0], 1: [0, 1], 2: [1, 2, 3], 3: [0, 3], 4: [2, 4], 5: [4, 8], 6: [9], 7: [8, 5]}
FEATURE_SETS = {"both": (True, True), "text": (True, False), "image": (False, True)}


def tiny_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    users = np.array([u for u, items in ITEMS_OF.items() for _ in items], dtype=np.int64)
    items = np.array([i for its in ITEMS_OF.values() for i in its], dtype=np.int64)
    gen = torch.Generator().manual_seed(0)
    text_feat, image_feat = torch.randn(N_ITEMS, D_TEXT, generator=gen), torch.randn(N_ITEMS, D_IMAGE, generator=gen)
    return ModelInputs(N_USERS, N_ITEMS, users, items, text_feat if text else None, image_feat if image else None)


def other_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    """20 users, 15 items (the last unseen), one duplicated pair (conftest.random_inputs)."""
    return random_inputs(20, 15, 5, 7, text=text, image=image, per_user=(2, 7))


def tiny_model(inputs: ModelInputs, seed: int = 0, **config):
    torch.manual_seed(seed)
    return build_model("dragon", inputs, {"embedding_size": DIM, "knn_k": 3, **config})


# --- naive references of MMRec's preprocessing and topk_sample -------------------------------


def naive_user_graph_dict(inputs: ModelInputs, top: int = 200) -> dict[int, tuple[list[int], list[float]]]:
    """MMRec's preprocessing/dualgnn-gen-u-u-matrix.py: pairwise common items of the users' item
    sets, each user's top `top` by count (ties: lower user id), the user itself excluded."""
    item_sets = defaultdict(set)
    for u, i in zip(inputs.train_users, inputs.train_items):
        item_sets[int(u)].add(int(i))
    graph = {}
    for u in range(inputs.n_users):
        shared = [(len(item_sets[u] & item_sets[v]), v) for v in range(inputs.n_users) if v != u]
        ranked = sorted(((c, v) for c, v in shared if c > 0), key=lambda cv: (-cv[0], cv[1]))[:top]
        graph[u] = ([v for _, v in ranked], [float(c) for c, _ in ranked])
    return graph


def naive_topk_sample(graph: dict, k: int, uniform: np.ndarray, mode: str = "softmax"):
    """MMRec's topk_sample, user by user; the pad draw np.random.randint(0, len(list)) is
    min(int(uniform[u, p] * p), p - 1) for the list's current length p."""
    index, weight = np.zeros((len(graph), k), dtype=np.int64), np.zeros((len(graph), k))
    for u in range(len(graph)):
        neighbours, counts = list(graph[u][0][:k]), list(graph[u][1][:k])
        if not neighbours:
            continue  # k slots of user 0 with weight 0
        while len(neighbours) < k:
            p = len(neighbours)
            pick = min(int(uniform[u, p] * p), p - 1)
            neighbours.append(neighbours[pick])
            counts.append(counts[pick])
        index[u] = neighbours
        exp = np.exp(np.array(counts) - max(counts))
        weight[u] = exp / exp.sum() if mode == "softmax" else np.full(k, 1.0 / k)
    return index, weight


def naive_user_aggregation(features: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """MMRec's User_Graph_sample: user u gets sum over its k slots of weight x the slot user's row."""
    out = np.zeros_like(features)
    for u in range(len(index)):
        for v, w in zip(index[u], weight[u]):
            out[u] += w * features[v]
    return out


def dense_user_matrix(index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(index), len(index)))
    for u in range(len(index)):
        for v, w in zip(index[u], weight[u]):
            matrix[u, v] += w
    return matrix


def sample_fixed(model, inputs: ModelInputs, k: int, seed: int = 7, mode: str = "softmax", top: int = 200):
    """Resample the model with generator `seed`; the naive draw from the same uniforms."""
    model.on_epoch_start(5, torch.Generator().manual_seed(seed))
    uniform = torch.rand(inputs.n_users, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return naive_topk_sample(naive_user_graph_dict(inputs, top), k, uniform.numpy(), mode)


# --- a dense float64 DRAGON, written as MMRec writes it --------------------------------------


def naive_knn_adj(features: torch.Tensor, k: int) -> torch.Tensor:
    """MMRec's get_knn_adj_mat + compute_normalized_laplacian, dense float64."""
    x = features.double()
    unit = x / x.norm(dim=-1, keepdim=True)
    sim = unit @ unit.T
    adj = torch.zeros_like(sim)
    for i in range(len(sim)):
        adj[i, torch.argsort(-sim[i])[:k]] = 1.0
    deg = adj.sum(1) + 1e-7
    return adj / deg.sqrt()[:, None] / deg.sqrt()[None, :]


def naive_mm_adj(inputs: ModelInputs, k: int, image_weight: float) -> torch.Tensor:
    graphs = {
        m: naive_knn_adj(f, k) for m, f in (("text", inputs.text_feat), ("image", inputs.image_feat)) if f is not None
    }
    if len(graphs) == 1:
        return next(iter(graphs.values()))
    return image_weight * graphs["image"] + (1 - image_weight) * graphs["text"]


def edge_index(inputs: ModelInputs) -> np.ndarray:
    """MMRec's edge_index: the distinct train pairs (u, U + i), then the reversed pairs."""
    n_users = inputs.n_users
    pairs = sorted({(int(u), n_users + int(i)) for u, i in zip(inputs.train_users, inputs.train_items)})
    forward = np.array(pairs).T
    return np.concatenate([forward, forward[[1, 0]]], axis=1)


def base_gcn(x: torch.Tensor, edges: np.ndarray) -> torch.Tensor:
    """MMRec's Base_gcn (aggr 'add'), edge by edge: out[col] += x[row] / sqrt(deg[row] deg[col])."""
    deg = np.bincount(edges[0], minlength=x.shape[0]).astype(np.float64)
    out = torch.zeros_like(x)
    for row, col in edges.T:
        out[col] = out[col] + x[row] / np.sqrt(deg[row] * deg[col])
    return out


def float64_params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().double().clone().requires_grad_() for name, p in model.named_parameters()}


def reference_forward(params, inputs: ModelInputs, mm_adj, user_matrix, n_layers=2, n_mm_layers=1):
    """MMRec's DRAGON.forward ('cat' construction) in dense float64 torch: (users, items, preferences)."""
    edges = edge_index(inputs)
    reps = {}
    for m, feat in (("image", inputs.image_feat), ("text", inputs.text_feat)):  # MMRec: v_gcn, then t_gcn
        if feat is None:
            continue
        hidden = F.leaky_relu(feat.double() @ params[f"feat_mlp.{m}.0.weight"].T + params[f"feat_mlp.{m}.0.bias"])
        projected = hidden @ params[f"feat_mlp.{m}.2.weight"].T + params[f"feat_mlp.{m}.2.bias"]
        x = torch.cat([params[f"preference.{m}"], projected])
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)  # F.normalize
        total, h = x, x
        for _ in range(n_layers):
            h = base_gcn(h, edges)
            total = total + h
        reps[m] = total
    n_users = inputs.n_users
    if len(reps) == 2:
        weight_u = params["weight_u"]
        users = torch.cat([weight_u[:, :1] * reps["image"][:n_users], weight_u[:, 1:] * reps["text"][:n_users]], dim=1)
        items = torch.cat([reps["image"][n_users:], reps["text"][n_users:]], dim=1)
    else:
        (rep,) = reps.values()
        users, items = rep[:n_users], rep[n_users:]
    h = items
    for _ in range(n_mm_layers):
        h = mm_adj @ h
    users = users + torch.from_numpy(user_matrix) @ users
    return users, items + h


def mmrec_calculate_loss(params, users_emb, items_emb, users, pos, neg, reg_weight):
    u = users_emb[users]
    diff = (u * items_emb[pos]).sum(1) - (u * items_emb[neg]).sum(1)
    loss = -torch.mean(torch.log2(torch.sigmoid(diff)))
    for name in ("preference.image", "preference.text"):
        if name in params:
            loss = loss + reg_weight * (params[name][users] ** 2).mean()
    return loss + reg_weight * (params["weight_u"] ** 2).mean()


def reference_for(model, inputs: ModelInputs, **layers):
    index, weight = sample_fixed(model, inputs, model.k)
    params = float64_params(model)
    mm_adj = naive_mm_adj(inputs, 3, 0.1)
    return params, reference_forward(params, inputs, mm_adj, dense_user_matrix(index, weight), **layers)


def fixed_batch(inputs: ModelInputs, size: int = 12):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    users, pos = torch.from_numpy(inputs.train_users)[rows], torch.from_numpy(inputs.train_items)[rows]
    return users, pos, torch.randint(inputs.n_items, (size,), generator=gen)


def randomise_weight_u(model) -> None:
    with torch.no_grad():  # move the fusion weights away from their ~0.5 start
        model.weight_u.copy_(torch.rand(model.n_users, 2, generator=torch.Generator().manual_seed(3)))


# --- the user co-occurrence graph --------------------------------------------------------------


@pytest.mark.parametrize(("case", "k", "top"), [("tiny", 3, 200), ("tiny", 40, 200), ("other", 5, 200), ("tiny", 3, 2)])
def test_neighbour_lists_equal_mmrec_preprocessing_script(case, k, top, monkeypatch):
    monkeypatch.setattr(guider.models.user_graph, "PREPROCESS_TOP", top)  # top=2: as if k > 200
    inputs = tiny_inputs() if case == "tiny" else other_inputs()
    model = tiny_model(inputs, k=k)
    graph = naive_user_graph_dict(inputs, top)
    for u in range(inputs.n_users):
        neighbours, counts = graph[u][0][:k], graph[u][1][:k]
        n = int(model.n_neighbours[u])
        assert n == len(neighbours)
        assert model.neighbour_index[u, :n].tolist() == neighbours
        assert model.neighbour_count[u, :n].tolist() == counts


@pytest.mark.parametrize(("case", "k"), [("tiny", 1), ("tiny", 3), ("tiny", 40), ("other", 4), ("other", 40)])
@pytest.mark.parametrize("mode", ["softmax", "mean"])
def test_sampled_user_graph_equals_mmrec_topk_sample(case, k, mode):
    inputs = tiny_inputs() if case == "tiny" else other_inputs()
    model = tiny_model(inputs, k=k, user_aggr_mode=mode)
    index, weight = sample_fixed(model, inputs, k, mode=mode)
    np.testing.assert_array_equal(model.user_graph_index.numpy(), index)
    np.testing.assert_allclose(model.user_graph_weight.double().numpy(), weight, atol=1e-6)
    np.testing.assert_allclose(model.user_adj.to_dense().double().numpy(), dense_user_matrix(index, weight), atol=1e-6)
    np.testing.assert_allclose(model.user_adj_t.to_dense().numpy(), model.user_adj.to_dense().numpy().T)


def test_tiny_case_truncates_pads_and_leaves_isolated_users_alone():
    inputs = tiny_inputs()
    model = tiny_model(inputs, k=3)
    index, weight = sample_fixed(model, inputs, 3)
    assert list(index[0]) == [1, 2, 3]  # 4 neighbours: counts 2, 2, 1, 1 -> the tie goes to user 3
    assert set(index[7]) == {5}  # one neighbour fills all slots
    assert np.all(weight[6] == 0) and np.all(index[6] == 0)  # no neighbour: nothing aggregated
    np.testing.assert_allclose(weight.sum(1), [1, 1, 1, 1, 1, 1, 0, 1], atol=1e-12)
    e = np.exp([2.0, 2.0, 1.0])  # softmax of the counts of user 0's slots
    np.testing.assert_allclose(weight[0], e / e.sum(), atol=1e-12)


@pytest.mark.parametrize(("case", "k"), [("tiny", 3), ("other", 4), ("other", 40)])
def test_user_aggregation_equals_dense_loop(case, k):
    """The sparse user-graph product (and its backward) against MMRec's gather-and-weight, user by user."""
    inputs = tiny_inputs() if case == "tiny" else other_inputs()
    model = tiny_model(inputs, k=k)
    index, weight = sample_fixed(model, inputs, k)
    features = torch.randn(inputs.n_users, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = features.float().requires_grad_()
    out = guider.models.dragon.sparse_matmul(model.user_adj, x, model.user_adj_t)  # as propagate() calls it
    assert model.user_adj.layout == torch.sparse_csr
    np.testing.assert_allclose(
        out.detach().double().numpy(), naive_user_aggregation(features.numpy(), index, weight), atol=1e-5
    )
    grad_out = torch.randn(inputs.n_users, 5, generator=torch.Generator().manual_seed(5))
    out.backward(grad_out)
    expected_grad = dense_user_matrix(index, weight).T @ grad_out.double().numpy()
    np.testing.assert_allclose(x.grad.double().numpy(), expected_grad, atol=1e-5)


def test_padding_is_seeded_by_the_generator_and_only_changes_in_on_epoch_start():
    inputs = other_inputs()
    model = tiny_model(inputs, k=40)

    def sample(seed):
        model.on_epoch_start(0, torch.Generator().manual_seed(seed))
        return model.user_graph_index.clone(), model.eval_embeddings().users

    first, users_first = sample(1)
    again, users_again = sample(1)
    other, users_other = sample(2)
    assert torch.equal(first, again) and torch.equal(users_first, users_again)
    assert not torch.equal(first, other) and not torch.allclose(users_first, users_other)
    torch.manual_seed(123)  # the global RNG does not touch the epoch's graph
    model.train()
    with torch.no_grad():
        assert torch.equal(model.propagate().users, users_other)


# --- the item kNN graph and the user-item GCN --------------------------------------------------


@pytest.mark.parametrize("features", FEATURE_SETS)
@pytest.mark.parametrize("image_weight", [0.1, 0.7])
def test_item_graph_equals_dense_knn_reference(features, image_weight):
    inputs = other_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, mm_image_weight=image_weight)
    expected = naive_mm_adj(inputs, 3, image_weight).numpy()
    assert model.mm_adj.layout == torch.sparse_csr
    np.testing.assert_allclose(model.mm_adj.to_dense().double().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(model.mm_adj_t.to_dense().double().numpy(), expected.T, atol=1e-6)


@pytest.mark.parametrize("case", ["tiny", "other"])
def test_heterogeneous_propagation_equals_base_gcn_edge_loop(case):
    inputs = tiny_inputs() if case == "tiny" else other_inputs()
    model = tiny_model(inputs)
    x = torch.randn(inputs.n_users + inputs.n_items, 2 * DIM, generator=torch.Generator().manual_seed(2))
    edges = edge_index(inputs)
    expected = base_gcn(x.double(), edges)
    ours = guider.models.dragon.sparse_matmul(model.norm_adj, x)
    np.testing.assert_allclose(ours.double().numpy(), expected.numpy(), atol=1e-6)


# --- forward pass, loss and gradients ----------------------------------------------------------


@pytest.mark.parametrize("case", ["tiny", "other"])
@pytest.mark.parametrize("features", FEATURE_SETS)
@pytest.mark.parametrize("k", [3, 40])
def test_eval_embeddings_match_dense_float64_reference(case, features, k):
    make = tiny_inputs if case == "tiny" else other_inputs
    inputs = make(*FEATURE_SETS[features])
    model = tiny_model(inputs, k=k)
    randomise_weight_u(model)
    _, (users, items) = reference_for(model, inputs)
    emb = model.eval_embeddings()
    width = DIM * (2 if features == "both" else 1)
    assert emb.users.shape == (inputs.n_users, width) and emb.items.shape == (inputs.n_items, width)
    np.testing.assert_allclose(emb.users.double().numpy(), users.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.items.double().numpy(), items.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize(("n_layers", "n_mm_layers"), [(3, 2), (1, 0), (0, 1)])
def test_layer_counts_set_the_hops(n_layers, n_mm_layers):
    inputs = tiny_inputs()
    model = tiny_model(inputs, n_layers=n_layers, n_mm_layers=n_mm_layers)
    _, (users, items) = reference_for(model, inputs, n_layers=n_layers, n_mm_layers=n_mm_layers)
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.users.double().numpy(), users.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.items.double().numpy(), items.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("features", ["both", "text", "image"])
def test_loss_and_gradients_equal_mmrec_calculate_loss(features):
    inputs = other_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, reg_weight=0.3)
    randomise_weight_u(model)
    params, (user_emb, item_emb) = reference_for(model, inputs)
    users, pos, neg = fixed_batch(inputs)
    expected = mmrec_calculate_loss(params, user_emb, item_emb, users, pos, neg, 0.3)
    expected.backward()
    model.train()
    loss = model.loss(users, pos, neg)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    loss.backward()
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad.double().numpy(), params[name].grad.numpy(), atol=1e-5, err_msg=name)
    emb = model.propagate()
    assert model.sample_losses(emb, users, pos, neg).shape == (len(users),)
    assert model.regularization(emb, users, pos, neg).item() == pytest.approx(
        0.3 * float((params["weight_u"].detach() ** 2).mean()), abs=1e-7
    )


def test_initial_weights_and_preferences_follow_mmrec():
    inputs = random_inputs(400, 300, 5, 7)
    model = tiny_model(inputs, embedding_size=64)
    assert model.preference["text"].std().item() == pytest.approx((2 / (400 + 64)) ** 0.5, rel=0.1)
    assert torch.allclose(model.weight_u.sum(1), torch.ones(400))  # softmax over the 2 modalities
    assert (model.weight_u - 0.5).abs().max().item() < 0.1  # of xavier-normal draws, std sqrt(2 / 402)
    assert model.feat_mlp["image"][0].weight.shape == (256, 7) and model.feat_mlp["image"][2].weight.shape == (64, 256)
    assert set(dict(model.named_parameters())) == {
        "preference.image",
        "preference.text",
        "weight_u",
        *(f"feat_mlp.{m}.{layer}.{p}" for m in ("image", "text") for layer in (0, 2) for p in ("weight", "bias")),
    }


def test_state_dict_carries_the_sampled_graph_not_the_frozen_inputs():
    inputs = other_inputs()
    trained = tiny_model(inputs, seed=0, k=40)
    trained.on_epoch_start(3, torch.Generator().manual_seed(3))
    fresh = tiny_model(inputs, seed=1, k=40)
    assert not torch.equal(fresh.user_graph_index, trained.user_graph_index)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.user_adj.to_dense(), trained.user_adj.to_dense())
    assert torch.equal(fresh.eval_embeddings().users, trained.eval_embeddings().users)
    frozen = ("_feat", "norm_adj", "mm_adj", "mm_adj_t", "user_adj", "user_adj_t", "neighbour_index", "n_neighbours")
    assert not any(key.endswith(frozen) for key in trained.state_dict())


# --- config ---------------------------------------------------------------------------------

# MMRec src/configs/model/DRAGON.yaml, written out: embedding_size 64, n_layers 2, n_mm_layers 1,
# knn_k 10, mm_image_weight 0.1, aggr_mode ['add'], reg_weight grid [0.1 .. 1e-5] (0.001: the
# authors' best on Baby); k 40 and user_aggr_mode 'softmax' are hard-coded in MMRec's
# src/models/dragon.py; feat_embed_dim 64 only sizes layers MMRec's forward never uses
MMREC_DRAGON = {
    "embedding_size": 64,
    "n_layers": 2,
    "n_mm_layers": 1,
    "knn_k": 10,
    "mm_image_weight": 0.1,
    "aggr_mode": "add",
    "reg_weight": 0.001,
    "k": 40,
    "user_aggr_mode": "softmax",
}
MMREC_GRID = {
    "model.aggr_mode": ("add",),
    "model.reg_weight": (0.1, 0.01, 0.001, 0.0001, 0.00001),
    "train.lr": (0.1, 0.01, 0.001, 0.0001, 0.00001),
}


def test_config_defaults_grid_and_errors():
    assert default_hparams("dragon") == MMREC_DRAGON
    cls = get_class("dragon")
    assert cls.Config.grid == MMREC_GRID and cls.display_name == "DRAGON"
    assert cls.uses_features and cls.needs_negatives and cls.train_propagate_equals_eval
    assert cls.Config.train_defaults == {}
    assert resolve_run_config("dragon").train.lr == 0.001  # the trainer's, in the grid
    for key, value, message in [
        ("k", 0, "model.k must be >= 1"),
        ("knn_k", 0, "model.knn_k must be >= 1"),
        ("mm_image_weight", 1.5, "model.mm_image_weight must be <= 1"),
        ("mm_image_weight", -0.1, "model.mm_image_weight must be >= 0"),
        ("aggr_mode", "mean", "model.aggr_mode must be one of add"),
        ("user_aggr_mode", "max", "model.user_aggr_mode must be one of softmax, mean"),
        ("reg_weight", -0.1, "model.reg_weight must be >= 0"),
        ("embedding_size", 0, "model.embedding_size must be >= 1"),
        ("n_layers", -1, "model.n_layers must be >= 0"),
        ("n_mm_layers", -1, "model.n_mm_layers must be >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_run_config("dragon", sets=[f"model.{key}={value}"])
    with pytest.raises(ConfigError, match="model.k"):
        build_model("dragon", tiny_inputs(), {"k": 0})
