"""DA-MRS (MMRec's DAMRS): the denoised modality kNN graphs (mean mask, masked top-k, the
item_num <= knn_k branch) against a dense float64 reference; the item-item behaviour graph
against a naive loop; pseudo labels + neighbour discrimination, the KL alignment and the
feedback weights against float64 re-implementations of MMRec's functions; the loss and its
gradients against MMRec's calculate_loss re-implemented in float64; the typed config."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from conftest import random_inputs

import guider.models.damrs  # noqa: F401  (registers the backbone)
import guider.models.damrs_parts as parts
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class

N_USERS, N_ITEMS, D_TEXT, D_IMAGE = 12, 24, 6, 5
TINY = {"embedding_size": 8, "knn_k": 4}
FEATURE_SETS = {"both": (True, True), "text": (True, False), "image": (False, True)}

# MMRec src/configs/model/DAMRS.yaml, written out (grids: their single value); iib_topk from its
# item_graph_dict_file 'item_graph_dict_2.npy', iib_min_users from build_iib_graph.py
MMREC_DAMRS_YAML = {
    "embedding_size": 64,
    "n_ui_layers": 2,
    "n_mm_layers": 1,
    "knn_k": 10,
    "kl_weight": 1.0,
    "neighbor_weight": 0.001,
    "iib_topk": 2,
    "iib_min_users": 2,
}


def tiny_inputs(text: bool = True, image: bool = True, seed: int = 0) -> ModelInputs:
    return random_inputs(N_USERS, N_ITEMS, D_TEXT, D_IMAGE, text=text, image=image, seed=seed, per_user=(4, 9))


def tiny_model(inputs: ModelInputs, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_model("damrs", inputs, TINY | overrides)
    model.on_epoch_start(0, torch.Generator().manual_seed(seed))
    return model


def fixed_batch(inputs: ModelInputs, size: int = 16):
    gen = torch.Generator().manual_seed(1)
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    users = torch.from_numpy(inputs.train_users)[rows]
    pos = torch.from_numpy(inputs.train_items)[rows]
    neg = torch.randint(inputs.n_items, (size,), generator=gen)
    return users, pos, neg


def modalities_of(inputs: ModelInputs) -> dict[str, torch.Tensor]:
    return {m: f for m, f in (("text", inputs.text_feat), ("image", inputs.image_feat)) if f is not None}


# --- dense float64 references, written as MMRec / build_iib_graph.py write them ---------------
def dense_normalized(adj: np.ndarray) -> np.ndarray:
    """MMRec's compute_normalized_laplacian on a binary adjacency: r = (row sums + 1e-7)^-1/2."""
    r = (adj.sum(1) + 1e-7) ** -0.5
    return adj * r[:, None] * r[None, :]


def dense_knn_graphs(modalities: dict[str, torch.Tensor], k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """MMRec get_knn_adj_mat: ({modality: dense normalised graph}, neighbour count per item)."""
    sims = {}
    for m, feat in modalities.items():
        x = feat.double().numpy()
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims[m] = unit @ unit.T
    masks = {m: sim < sim.mean() for m, sim in sims.items()}
    for sim in sims.values():
        for mask in masks.values():
            sim[mask] = 0.0
    counting = "text" if "text" in sims else "image"
    n = len(next(iter(sims.values())))
    graphs, counts = {m: np.zeros((n, n)) for m in sims}, np.zeros(n, dtype=int)
    for i in range(n):
        item_num = int(np.count_nonzero(sims[counting][i]))
        take = item_num if item_num <= k else k
        counts[i] = take
        for m, sim in sims.items():
            graphs[m][i, np.argsort(-sim[i], kind="stable")[:take]] = 1.0
    return {m: dense_normalized(g) for m, g in graphs.items()}, counts


def naive_behaviour_graph(users, items, n_items: int, topk: int, min_users: int) -> np.ndarray:
    """build_iib_graph.py (pairwise user-set intersections >= min_users, top-k per row, lower id
    on ties) + MMRec get_session_adj (self-loops, ones on the edges), normalised."""
    user_sets = {i: set() for i in range(n_items)}
    for u, i in zip(users, items):
        user_sets[int(i)].add(int(u))
    shared = np.zeros((n_items, n_items))
    for a in range(n_items):
        for b in range(a + 1, n_items):
            common = len(user_sets[a] & user_sets[b])
            if common >= min_users:
                shared[a, b] = shared[b, a] = common
    adj = np.eye(n_items)
    for i in range(n_items):
        order = sorted((j for j in range(n_items) if shared[i, j] > 0), key=lambda j: (-shared[i, j], j))
        adj[i, order[:topk]] = 1.0
    return dense_normalized(adj)


def dense_ui_adj(inputs: ModelInputs) -> np.ndarray:
    n = inputs.n_users + inputs.n_items
    adj = np.zeros((n, n))
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, inputs.n_users + i] = adj[inputs.n_users + i, u] = 1.0
    return dense_normalized(adj)


def mmrec_label_prediction(emb, aug_emb):
    return torch.softmax(F.normalize(emb, dim=1) @ F.normalize(aug_emb, dim=1).T, dim=1)


def mmrec_generate_pseudo_labels(*probs):
    """MMRec generate_pesudo_labels(prob1, prob2, prob3): the last is the view's own; with one
    modality there is a single other view."""
    own = probs[-1]
    positive = sum(probs[:-1]) + own + own
    mm_pos = torch.topk(positive, 10, dim=-1).indices
    single = own.clone().scatter_(1, mm_pos, 0)
    return mm_pos, torch.topk(single, 10, dim=-1).indices


def mmrec_neighbor_discrimination(mm_positive, s_positive, emb, aug_emb, temperature=0.2):
    n_aug, n_emb = F.normalize(aug_emb, dim=1), F.normalize(emb, dim=1)
    emb2 = n_emb.reshape(-1, 1, n_emb.shape[1]).tile(1, 10, 1)
    mm_score = torch.exp((emb2 * n_aug[mm_positive]).sum(2) / temperature).sum(1)
    s_score = torch.exp((emb2 * n_aug[s_positive]).sum(2) / temperature).sum(1)
    ttl = torch.exp(n_emb @ n_aug.T / temperature).sum(1)
    return (-torch.log(mm_score / ttl + 10e-10) - torch.log(s_score / (ttl - mm_score) + 10e-10)).mean()


def mmrec_neighbour_loss(views: dict[str, torch.Tensor], i_id: torch.Tensor) -> torch.Tensor:
    """MMRec's three calls (s: (t, v, s); v: (t, s, v); t: (v, s, t)), generalised to two views."""
    probs = {v: mmrec_label_prediction(h[i_id], h) for v, h in views.items()}
    losses = []
    for view, h in views.items():
        others = [probs[o] for o in views if o != view]
        mm_pos, s_pos = mmrec_generate_pseudo_labels(*others, probs[view])
        losses.append(mmrec_neighbor_discrimination(mm_pos, s_pos, h[i_id], h))
    return sum(losses) / len(losses)


def mmrec_kl(p1, p2):
    return p1 * torch.log(p1) - p1 * torch.log(p2) + (1 - p1) * torch.log(1 - p1) - (1 - p1) * torch.log(1 - p2)


def mmrec_weights(u_g, views: dict[str, torch.Tensor], pos, neg):
    """MMRec get_weight_modal (its stack order t, s, v does not matter)."""
    p = torch.sigmoid(torch.stack([(u_g * F.normalize(h[pos], dim=-1)).sum(1) for h in views.values()]))
    n = torch.sigmoid(torch.stack([(u_g * F.normalize(h[neg], dim=-1)).sum(1) for h in views.values()]))
    p_var, p_mean, p_max = torch.var(p, dim=0), torch.mean(p, dim=0), torch.max(p, dim=0).values
    n_mean = torch.mean(n)
    pos_weight = torch.clamp(p_mean * torch.pow(torch.exp(-p_var), 2.0), 0, 1)
    mask = torch.zeros_like(p_mean)
    mask[p_mean < n_mean] = 1
    return pos_weight.detach(), torch.clamp((p_max - n_mean) * mask, 0, 1).detach()


def mmrec_forward(user_emb, item_emb, ui_adj, graphs: dict[str, torch.Tensor], n_ui_layers=2, n_mm_layers=1):
    ego = torch.cat([user_emb, item_emb])
    layers = [ego]
    for _ in range(n_ui_layers):
        layers.append(ui_adj @ layers[-1])
    out = torch.stack(layers, dim=1).mean(dim=1)
    views = {}
    for view, adj in graphs.items():
        h = item_emb
        for _ in range(n_mm_layers):
            h = adj @ h
        views[view] = h
    return out[: user_emb.shape[0]], out[user_emb.shape[0] :], views


def mmrec_calculate_loss(users_emb, items_emb, views, users, pos, neg, neighbor_weight=0.001, kl_weight=1.0):
    u_id, i_id = torch.unique(users), torch.unique(torch.cat([pos, neg]))
    neighbour = mmrec_neighbour_loss(views, i_id)
    content = sum(views.values()) / len(views)
    p_g = torch.sigmoid(users_emb[u_id] @ F.normalize(items_emb[i_id], dim=-1).T)
    p_t = torch.sigmoid(users_emb[u_id] @ F.normalize(content[i_id], dim=-1).T)
    kl = torch.mean(mmrec_kl(p_g, p_t) + mmrec_kl(p_t, p_g))
    p_weight, n_weight = mmrec_weights(users_emb[users], views, pos, neg)
    u, ia = users_emb[users], items_emb + content
    pos_s, neg_s = (u * ia[pos]).sum(1), (u * ia[neg]).sum(1)
    mf = -torch.mean(
        torch.log(torch.sigmoid(pos_s - neg_s)) * p_weight + torch.log(torch.sigmoid(neg_s - pos_s)) * n_weight
    )
    return mf + neighbor_weight * neighbour + kl * kl_weight


def dense_graphs_of(inputs: ModelInputs, knn_k: int, iib_topk: int = 2, iib_min_users: int = 2):
    graphs, _ = dense_knn_graphs(modalities_of(inputs), knn_k)
    behaviour = naive_behaviour_graph(inputs.train_users, inputs.train_items, inputs.n_items, iib_topk, iib_min_users)
    ordered = {v: graphs[v] for v in ("text", "image") if v in graphs} | {"behaviour": behaviour}
    return {v: torch.from_numpy(g) for v, g in ordered.items()}


# --- the denoised kNN graphs ----------------------------------------------------------------
@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
@pytest.mark.parametrize("knn_k", [3, 15, 30])  # 15: many rows keep < k; 30 > n_items: always item_num
@pytest.mark.parametrize("block_rows", [None, 1, 5])
def test_denoised_knn_graphs_match_dense_reference(features, knn_k, block_rows, monkeypatch):
    if block_rows:
        monkeypatch.setattr(parts, "_BLOCK_ELEMENTS", block_rows * N_ITEMS)
    modalities = modalities_of(tiny_inputs(*FEATURE_SETS[features]))
    expected, counts = dense_knn_graphs(modalities, knn_k)
    got = parts.denoised_knn_graphs(modalities, knn_k)
    assert list(got) == list(expected)
    for m in got:
        np.testing.assert_allclose(got[m].to_dense().double().numpy(), expected[m], atol=1e-6, err_msg=m)
        assert got[m]._nnz() == counts.sum()
    if knn_k >= 15:
        assert (counts < knn_k).any()  # the item_num <= knn_k branch is exercised
    if knn_k == 3:
        assert (counts == 3).all()


def test_mean_mask_is_either_modality_and_the_mean_needs_no_dense_matrix():
    modalities = modalities_of(tiny_inputs())
    for feat in modalities.values():
        unit = F.normalize(feat.double(), dim=-1)
        assert parts.mean_cosine_similarity(unit.float()) == pytest.approx(float((unit @ unit.T).mean()), abs=1e-6)
    both = parts.denoised_knn_neighbours(modalities, N_ITEMS)
    text_only = parts.denoised_knn_neighbours({"text": modalities["text"]}, N_ITEMS)
    # the image mask removes pairs the text mask alone keeps: fewer edges with both modalities
    assert len(both["text"][0]) < len(text_only["text"][0])
    assert torch.equal(both["text"][0], both["image"][0])  # one neighbour count per item


def test_model_holds_the_graphs_as_non_persistent_buffers():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    expected = dense_graphs_of(inputs, TINY["knn_k"])
    assert model.graphs.views == ("text", "image", "behaviour")
    for view, dense in expected.items():
        np.testing.assert_allclose(model.graphs.adjacency(view).to_dense().double().numpy(), dense, atol=1e-6)
    assert set(model.state_dict()) == {"user_emb", "item_emb"}


# --- the item-item behaviour graph ----------------------------------------------------------
# users 0..5 over items 0..6; item 6 is shared by nobody twice; (0, 0) is repeated
HAND_USERS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 0]
HAND_ITEMS = [0, 1, 2, 3, 0, 1, 2, 0, 1, 4, 2, 3, 4, 3, 4, 5, 6, 0]


@pytest.mark.parametrize(("topk", "min_users"), [(2, 2), (1, 2), (3, 2), (2, 1), (5, 3)])
def test_behaviour_graph_matches_naive_loop(topk, min_users):
    n_items = 7
    train = sp.csr_matrix((np.ones(len(HAND_USERS)), (HAND_USERS, HAND_ITEMS)), shape=(6, n_items))
    got = parts.behaviour_graph(train, topk, min_users, torch.device("cpu")).to_dense().double().numpy()
    expected = naive_behaviour_graph(HAND_USERS, HAND_ITEMS, n_items, topk, min_users)
    np.testing.assert_allclose(got, expected, atol=1e-7)
    assert np.all(np.diag(got) > 0)  # self-loops


def test_behaviour_neighbours_rank_by_shared_users_lower_id_on_ties():
    train = sp.csr_matrix((np.ones(len(HAND_USERS)), (HAND_USERS, HAND_ITEMS)), shape=(6, 7))
    rows, cols = parts.behaviour_neighbours(train, 2, 2)
    edges = sorted(zip(rows.tolist(), cols.tolist()))
    # item 0 shares 3 users with 1, 2 with 2; item 2 shares 2 with 0, 1 and 3: lower ids 0, 1 win
    assert [c for r, c in edges if r == 0] == [1, 2]
    assert [c for r, c in edges if r == 2] == [0, 1]
    assert not any(r in (5, 6) for r, _ in edges)  # items 5 and 6 share no two users with anyone


def test_model_behaviour_graph_uses_the_train_interactions():
    inputs = tiny_inputs()
    model = tiny_model(inputs, iib_topk=3, iib_min_users=1)
    expected = naive_behaviour_graph(inputs.train_users, inputs.train_items, N_ITEMS, 3, 1)
    np.testing.assert_allclose(model.graphs.adjacency("behaviour").to_dense().double().numpy(), expected, atol=1e-6)


# --- neighbour discrimination, KL, weights against MMRec's functions ------------------------
def random_views(names=("text", "image", "behaviour"), d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {v: torch.randn(N_ITEMS, d, generator=gen, dtype=torch.float64) for v in names}


@pytest.mark.parametrize("names", [("text", "image", "behaviour"), ("image", "behaviour")])
def test_neighbour_discrimination_matches_mmrec(names):
    views = random_views(names)
    items = torch.tensor([0, 3, 4, 7, 11, 12, 19, 23])
    leaves = {v: h.clone().requires_grad_(True) for v, h in views.items()}
    expected = mmrec_neighbour_loss(leaves, items)
    expected.backward()
    ours = {v: h.float().requires_grad_(True) for v, h in views.items()}
    got = parts.neighbour_discrimination_loss(ours, items)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)
    for v in views:
        np.testing.assert_allclose(ours[v].grad.double().numpy(), leaves[v].grad.numpy(), atol=1e-5, err_msg=v)


def test_neighbour_discrimination_in_blocks_and_its_written_out_gradient():
    names = ("text", "behaviour")
    items = torch.tensor([1, 5, 6, 9, 20])
    results = []
    for block_rows in (None, 2):
        leaves = {v: h.requires_grad_(True) for v, h in random_views(names, d=4, seed=5).items()}
        loss = parts.neighbour_discrimination_loss(leaves, items, block_rows=block_rows)
        loss.backward()
        results.append((loss.item(), [h.grad for h in leaves.values()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, atol=1e-12)
    inputs = tuple(h.requires_grad_(True) for h in random_views(names, d=4, seed=6).values())
    assert torch.autograd.gradcheck(
        lambda *hs: parts.neighbour_discrimination_loss(dict(zip(names, hs)), items, block_rows=2), inputs
    )


def test_pseudo_labels_blocked_equal_unblocked():
    views = random_views()
    items = torch.arange(N_ITEMS)
    cosines = {v: F.normalize(h, dim=1)[items] @ F.normalize(h, dim=1).T for v, h in views.items()}
    whole = parts.pseudo_labels(cosines)
    blocked = parts.pseudo_labels(cosines, block_rows=5)
    for v in views:
        assert torch.equal(whole[v][0], blocked[v][0]) and torch.equal(whole[v][1], blocked[v][1])
        assert not (whole[v][0][:, :, None] == whole[v][1][:, None, :]).any()  # single-view excludes multi-view


def test_kl_alignment_is_mmrecs_symmetric_kl():
    gen = torch.Generator().manual_seed(2)
    users, items, content = (torch.randn(n, 8, generator=gen, dtype=torch.float64) for n in (5, 9, 9))
    leaves = [t.clone().requires_grad_(True) for t in (users, items, content)]
    p_g = torch.sigmoid(leaves[0] @ F.normalize(leaves[1], dim=-1).T)
    p_t = torch.sigmoid(leaves[0] @ F.normalize(leaves[2], dim=-1).T)
    expected = torch.mean(mmrec_kl(p_g, p_t) + mmrec_kl(p_t, p_g))
    expected.backward()
    ours = [t.clone().requires_grad_(True) for t in (users, items, content)]
    got = parts.alignment_kl(*ours)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    for a, b in zip(ours, leaves):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-10)
    big = parts.alignment_kl(100 * users, items, content)  # saturated sigmoids: MMRec's log(0) is no issue
    assert torch.isfinite(big)


@pytest.mark.parametrize("names", [("text", "image", "behaviour"), ("text", "behaviour")])
def test_feedback_weights_match_mmrec(names):
    views = random_views(names, seed=3)
    gen = torch.Generator().manual_seed(4)
    users = 2 * torch.randn(32, 8, generator=gen, dtype=torch.float64)
    pos, neg = torch.randint(N_ITEMS, (32,), generator=gen), torch.randint(N_ITEMS, (32,), generator=gen)
    expected = mmrec_weights(users, views, pos, neg)
    got = parts.feedback_weights(users.requires_grad_(True), views, pos, neg)
    for a, b in zip(got, expected):
        assert not a.requires_grad
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12)
    assert (got[1] > 0).any() and (got[1] == 0).any()  # both sides of the p_mean < n_mean mask


def test_denoised_bpr_is_mmrecs_and_finite_where_mmrecs_log_is_not():
    pos, neg = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.5])
    pw, nw = torch.tensor([0.3, 0.7, 1.0]), torch.tensor([0.0, 0.4, 0.2])
    expected = -(torch.log(torch.sigmoid(pos - neg)) * pw + torch.log(torch.sigmoid(neg - pos)) * nw)
    assert torch.allclose(parts.denoised_bpr(pos, neg, pw, nw), expected, atol=1e-6)
    assert torch.isfinite(parts.denoised_bpr(torch.tensor([-200.0]), torch.tensor([0.0]), pw[:1], nw[:1])).all()


# --- the whole model against MMRec's forward and calculate_loss ---------------------------------
def double_params(model):
    return {name: p.detach().double().clone().requires_grad_(True) for name, p in model.named_parameters()}


@pytest.mark.parametrize("features", ["both", "text"])
def test_loss_and_gradients_match_mmrec_calculate_loss(features):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, neighbor_weight=0.3, kl_weight=0.7)  # weights that show each term
    users, pos, neg = fixed_batch(inputs)
    params = double_params(model)
    graphs = dense_graphs_of(inputs, TINY["knn_k"])
    ui_adj = torch.from_numpy(dense_ui_adj(inputs))
    users_emb, items_emb, views = mmrec_forward(params["user_emb"], params["item_emb"], ui_adj, graphs)
    expected = mmrec_calculate_loss(users_emb, items_emb, views, users, pos, neg, 0.3, 0.7)
    expected.backward()
    model.train()
    loss = model.loss(users, pos, neg)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for name, param in model.named_parameters():
        np.testing.assert_allclose(param.grad.double().numpy(), params[name].grad.numpy(), atol=1e-5, err_msg=name)


def test_scores_are_lightgcn_items_plus_the_views_mean():
    inputs = tiny_inputs()
    model = tiny_model(inputs, n_mm_layers=2)
    params = double_params(model)
    graphs = dense_graphs_of(inputs, TINY["knn_k"])
    users_emb, items_emb, views = mmrec_forward(
        params["user_emb"], params["item_emb"], torch.from_numpy(dense_ui_adj(inputs)), graphs, n_mm_layers=2
    )
    expected_items = (items_emb + (views["text"] + views["image"] + views["behaviour"]) / 3).detach()
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.items.double().numpy(), expected_items.numpy(), atol=1e-5)
    users = torch.tensor([0, 5, 11])
    expected_scores = users_emb.detach()[users] @ expected_items.T  # MMRec full_sort_predict
    np.testing.assert_allclose(model.scores(emb, users).double().numpy(), expected_scores.numpy(), atol=1e-5)


def test_sample_losses_are_the_weighted_bpr_and_the_rest_is_regularization():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    users, pos, neg = fixed_batch(inputs)
    emb = model.eval_embeddings()
    u = emb.users[users]
    weights = parts.feedback_weights(u, emb.extras["views"], pos, neg)
    expected = parts.denoised_bpr((u * emb.items[pos]).sum(1), (u * emb.items[neg]).sum(1), *weights)
    assert torch.allclose(model.sample_losses(emb, users, pos, neg), expected)
    neighbour, kl = parts.alignment_losses(
        emb.users, emb.extras["cf_items"], emb.extras["views"], emb.extras["content"], users, pos, neg
    )
    assert torch.isclose(model.regularization(emb, users, pos, neg), 0.001 * neighbour + kl)


def test_fewer_items_than_pseudo_positives_is_a_clear_error():
    inputs = random_inputs(5, 9, D_TEXT, D_IMAGE)
    with pytest.raises(ValueError, match="10 pseudo-positive items; the data has 9"):
        tiny_model(inputs)


# --- the typed config -----------------------------------------------------------------------
def test_config_defaults_are_mmrecs_yaml():
    assert default_hparams("damrs") == pytest.approx(MMREC_DAMRS_YAML)
    cls = get_class("damrs")
    assert cls.Config.grid == {
        "model.n_ui_layers": (2,),
        "model.neighbor_weight": (0.001,),
        "model.kl_weight": (1.0,),
        "model.n_mm_layers": (1,),
        "train.lr": (0.001,),
    }
    run_config = resolve_run_config("damrs")
    assert run_config.train.lr == 0.001 and run_config.train.lr_scheduler == [1.0, 50.0]
    for key in cls.Config.grid:
        section, _, field = key.partition(".")
        assert hasattr(run_config.model if section == "model" else run_config.train, field)
    assert cls.display_name == "DA-MRS" and cls.uses_features and cls.needs_negatives
    assert cls.train_propagate_equals_eval


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("knn_k", "0", "model.knn_k must be >= 1"),
        ("n_ui_layers", "-1", "model.n_ui_layers must be >= 0"),
        ("kl_weight", "-0.5", "model.kl_weight must be >= 0"),
        ("neighbor_weight", "x", "model.neighbor_weight must be a number"),
        ("iib_topk", "0", "model.iib_topk must be >= 1"),
        ("iib_min_users", "1.5", "model.iib_min_users must be an integer"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("damrs", sets=(f"model.{key}={value}",))
