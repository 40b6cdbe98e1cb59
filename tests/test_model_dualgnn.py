"""DualGNN: the per-epoch sampled user graph against a naive loop over users (MMRec's script
and topk_sample), the GCNs, fusion and user-graph aggregation against a dense float64
reference, MMRec's loss, the saved graph, training determinism, resume, GUIDER, config."""

from collections import defaultdict

import numpy as np
import pytest
import torch

import guider.models.dualgnn  # noqa: F401  (registers the backbone)
import guider.models.user_graph
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class

N_USERS, N_ITEMS, D_TEXT, D_IMAGE, DIM = 8, 10, 4, 6, 8
# user 0 and 2 have 4 co-occurring users (ties at count 1), 5 has 2, 7 has 1, 6 none (its
# only item is its own); items 6 and 7 have no edge; (0, 0) is given twice and is one edge
ITEMS_OF = {0: [0, 1, 2, 0], 1: [0, 1], 2: [1, 2, 3], 3: [0, 3], 4: [2, 4], 5: [4, 8], 6: [9], 7: [8, 5]}


def tiny_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    users = np.array([u for u, items in ITEMS_OF.items() for _ in items], dtype=np.int64)
    items = np.array([i for its in ITEMS_OF.values() for i in its], dtype=np.int64)
    gen = torch.Generator().manual_seed(0)
    return ModelInputs(
        n_users=N_USERS,
        n_items=N_ITEMS,
        train_users=users,
        train_items=items,
        text_feat=torch.randn(N_ITEMS, D_TEXT, generator=gen) if text else None,
        image_feat=torch.randn(N_ITEMS, D_IMAGE, generator=gen) if image else None,
    )


def random_inputs(n_users: int = 20, n_items: int = 15, seed: int = 0) -> ModelInputs:
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(n_items, size=rng.integers(1, 6), replace=False) for _ in range(n_users)]
    users = np.concatenate([[u] * len(c) for u, c in enumerate(chosen)]).astype(np.int64)
    gen = torch.Generator().manual_seed(seed)
    return ModelInputs(
        n_users, n_items, users, np.concatenate(chosen).astype(np.int64), torch.randn(n_items, 5, generator=gen)
    )


def tiny_model(inputs: ModelInputs, seed: int = 0, **config):
    torch.manual_seed(seed)
    return build_model("dualgnn", inputs, {"embedding_size": DIM, **config})


# --- naive references -------------------------------------------------------------------------


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


def dense_user_matrix(index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(index), len(index)))
    for u in range(len(index)):
        for v, w in zip(index[u], weight[u]):
            matrix[u, v] += w
    return matrix


def naive_sym_norm(inputs: ModelInputs) -> np.ndarray:
    """Dense float64 D^-1/2 A D^-1/2 of the (users + items) graph (torch_geometric's 'add' norm)."""
    n = inputs.n_users + inputs.n_items
    adj = np.zeros((n, n))
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, inputs.n_users + i] = adj[inputs.n_users + i, u] = 1.0
    deg = adj.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0.0)
    return adj * inv[:, None] * inv[None, :]


def as64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def reference_embeddings(model, inputs: ModelInputs, user_matrix: np.ndarray, n_layers: int = 2):
    """MMRec's DualGNN.forward in float64 numpy: per-modality GCN x + A x + A^2 x, fusion, user graph."""
    adj = naive_sym_norm(inputs)
    feats = {"text": inputs.text_feat, "image": inputs.image_feat}
    reps = {}
    for m, feat in feats.items():
        if feat is None:
            continue
        mlp = model.feat_mlp[m]
        hidden = as64(feat) @ as64(mlp[0].weight).T + as64(mlp[0].bias)
        hidden = np.where(hidden > 0, hidden, 0.01 * hidden)  # F.leaky_relu
        projected = hidden @ as64(mlp[2].weight).T + as64(mlp[2].bias)
        x = np.vstack([as64(model.preference[m]), projected])
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        total, h = x, x
        for _ in range(n_layers):
            h = adj @ h
            total = total + h
        reps[m] = total
    if len(reps) == 2:
        v_rep = reps["image"] + reps["text"]  # `representation = v_rep; representation += t_rep` aliases v_rep
        w = as64(model.weight_u)
        users = w[:, :1] * v_rep[:N_USERS] + w[:, 1:] * reps["text"][:N_USERS]
        items = v_rep[N_USERS:]
    else:
        (rep,) = reps.values()
        users, items = rep[:N_USERS], rep[N_USERS:]
    return users + user_matrix @ users, items


def sample_fixed(model, inputs: ModelInputs, k: int, seed: int = 7, mode: str = "softmax", top: int = 200):
    """Resample the model with generator `seed`; the naive draw from the same uniforms."""
    model.on_epoch_start(5, torch.Generator().manual_seed(seed))
    uniform = torch.rand(inputs.n_users, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return naive_topk_sample(naive_user_graph_dict(inputs, top), k, uniform.numpy(), mode)


# --- the sampled user graph -------------------------------------------------------------------


@pytest.mark.parametrize(("case", "k"), [("tiny", 1), ("tiny", 3), ("tiny", 40), ("random", 4), ("random", 40)])
def test_sampled_user_graph_equals_naive_loop(case, k):
    inputs = tiny_inputs() if case == "tiny" else random_inputs()
    model = tiny_model(inputs, k=k)
    index, weight = sample_fixed(model, inputs, k)
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


def test_mmrec_top_200_cut_is_kept_for_large_k(monkeypatch):
    monkeypatch.setattr(guider.models.user_graph, "PREPROCESS_TOP", 2)  # as if k > 200
    inputs = tiny_inputs()
    model = tiny_model(inputs, k=3)
    index, weight = sample_fixed(model, inputs, 3, top=2)
    assert model.n_neighbours.max() == 2
    np.testing.assert_array_equal(model.user_graph_index.numpy(), index)
    np.testing.assert_allclose(model.user_graph_weight.double().numpy(), weight, atol=1e-6)


def test_mean_user_aggregation():
    inputs = random_inputs()
    model = tiny_model(inputs, k=4, user_aggr_mode="mean")
    index, weight = sample_fixed(model, inputs, 4, mode="mean")
    np.testing.assert_array_equal(model.user_graph_index.numpy(), index)
    np.testing.assert_allclose(model.user_graph_weight.double().numpy(), weight, atol=1e-7)


def test_padding_is_seeded_by_the_generator_and_only_changes_in_on_epoch_start():
    inputs = random_inputs()
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


# --- forward pass and loss --------------------------------------------------------------------


@pytest.mark.parametrize("features", ["both", "text", "image"])
def test_eval_embeddings_match_dense_float64_reference(features):
    inputs = tiny_inputs(text=features != "image", image=features != "text")
    model = tiny_model(inputs, k=3)
    with torch.no_grad():  # move the fusion weights away from their ~0.5 start
        model.weight_u.copy_(torch.rand(N_USERS, 2, generator=torch.Generator().manual_seed(3)))
    index, weight = sample_fixed(model, inputs, 3)
    users, items = reference_embeddings(model, inputs, dense_user_matrix(index, weight))
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.users.double().numpy(), users, atol=1e-5)
    np.testing.assert_allclose(emb.items.double().numpy(), items, atol=1e-5)
    assert np.all(np.abs(items[6]) > 0)  # an item without edges keeps its normalised input


def test_n_layers_sets_the_number_of_hops():
    inputs = tiny_inputs()
    model = tiny_model(inputs, k=3, n_layers=3)
    index, weight = sample_fixed(model, inputs, 3)
    users, items = reference_embeddings(model, inputs, dense_user_matrix(index, weight), n_layers=3)
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.users.double().numpy(), users, atol=1e-5)
    np.testing.assert_allclose(emb.items.double().numpy(), items, atol=1e-5)


@pytest.mark.parametrize("features", ["both", "text"])
def test_loss_equals_mmrec_calculate_loss(features):
    inputs = tiny_inputs(image=features == "both")
    model = tiny_model(inputs, k=3, reg_weight=0.3)
    index, weight = sample_fixed(model, inputs, 3)
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (12,), generator=gen)
    users, pos = torch.from_numpy(inputs.train_users)[rows], torch.from_numpy(inputs.train_items)[rows]
    neg = torch.randint(N_ITEMS, (12,), generator=gen)
    user_emb, item_emb = reference_embeddings(model, inputs, dense_user_matrix(index, weight))
    u, i, j = user_emb[users], item_emb[pos], item_emb[neg]
    diff = (u * i).sum(1) - (u * j).sum(1)
    expected = -np.mean(np.log2(1 / (1 + np.exp(-diff))))
    for m in model.preference:
        expected += 0.3 * np.mean(as64(model.preference[m])[users] ** 2)
    expected += 0.3 * np.mean(as64(model.weight_u) ** 2) + 0.3 * np.mean(as64(model.weight_i) ** 2)
    model.train()
    loss = model.loss(users, pos, neg)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    emb = model.propagate()
    per_sample = model.sample_losses(emb, users, pos, neg)
    assert per_sample.shape == (12,)
    assert model.regularization(emb, users, pos, neg).item() == pytest.approx(
        0.3 * (np.mean(as64(model.weight_u) ** 2) + np.mean(as64(model.weight_i) ** 2)), abs=1e-7
    )


def test_initial_weights_and_preferences_follow_mmrec():
    inputs = random_inputs(n_users=400, n_items=300)
    model = tiny_model(inputs, embedding_size=64)
    assert model.preference["text"].std().item() == pytest.approx((2 / (400 + 64)) ** 0.5, rel=0.1)
    assert torch.allclose(model.weight_u.sum(1), torch.ones(400))  # softmax over the 2 modalities
    assert (model.weight_u - 0.5).abs().max().item() < 0.1  # of xavier-normal draws, std sqrt(2 / 402)
    assert model.feat_mlp["text"][0].weight.shape == (256, 5) and model.feat_mlp["text"][2].weight.shape == (64, 256)


def test_state_dict_carries_the_sampled_graph():
    inputs = random_inputs()
    trained = tiny_model(inputs, seed=0, k=40)
    trained.on_epoch_start(3, torch.Generator().manual_seed(3))
    fresh = tiny_model(inputs, seed=1, k=40)
    assert not torch.equal(fresh.user_graph_index, trained.user_graph_index)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.user_adj.to_dense(), trained.user_adj.to_dense())
    assert torch.equal(fresh.eval_embeddings().users, trained.eval_embeddings().users)
    assert not any(key.endswith(("_feat", "norm_adj", "user_adj", "user_adj_t")) for key in trained.state_dict())


# --- config ---------------------------------------------------------------------------------

# MMRec src/configs/model/DualGNN.yaml, written out: embedding_size 64, n_layers 2, aggr_mode
# ['add'], reg_weight grid first value 0.1; k 40 and user_aggr_mode 'softmax' are hard-coded
# in MMRec's src/models/dualgnn.py
MMREC_DUALGNN = {
    "embedding_size": 64,
    "n_layers": 2,
    "aggr_mode": "add",
    "reg_weight": 0.1,
    "k": 40,
    "user_aggr_mode": "softmax",
}
MMREC_GRID = {
    "model.aggr_mode": ("add",),
    "model.reg_weight": (0.1, 0.01, 0.001, 0.0001, 0.00001),
    "train.lr": (0.1, 0.01, 0.001, 0.0001, 0.00001),
}


def test_config_defaults_grid_and_errors():
    assert default_hparams("dualgnn") == MMREC_DUALGNN
    cls = get_class("dualgnn")
    assert cls.Config.grid == MMREC_GRID and cls.display_name == "DualGNN"
    assert cls.uses_features and cls.needs_negatives and cls.train_propagate_equals_eval
    assert resolve_run_config("dualgnn").train.lr == 0.001  # the trainer's, in the grid
    for key, value, message in [
        ("k", 0, "model.k must be >= 1"),
        ("aggr_mode", "mean", "model.aggr_mode must be one of add"),
        ("user_aggr_mode", "max", "model.user_aggr_mode must be one of softmax, mean"),
        ("reg_weight", -0.1, "model.reg_weight must be >= 0"),
        ("embedding_size", 0, "model.embedding_size must be >= 1"),
        ("n_layers", -1, "model.n_layers must be >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_run_config("dualgnn", sets=[f"model.{key}={value}"])
    with pytest.raises(ConfigError, match="model.k"):
        build_model("dualgnn", tiny_inputs(), {"k": 0})
