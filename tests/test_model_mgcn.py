"""MGCN: the purifier, the frozen kNN item graphs, the behaviour-aware fuser, the InfoNCE and
MMRec's calculate_loss (value and gradients) against dense float64 re-implementations of
MMRec's MGCN; one modality; the typed config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_inputs

import guider.models.mgcn  # noqa: F401  (registers the backbone)
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class
from guider.models.mgcn import MGCN, infonce_rows

N_USERS, N_ITEMS, D_TEXT, D_IMAGE = 7, 11, 6, 5
TINY = {"embedding_size": 8, "knn_k": 3, "reg_weight": 0.05, "cl_loss": 0.3}
FEATURE_SETS = {"both": (True, True), "text": (True, False), "image": (False, True)}


def tiny_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    """Every user has 2-4 items, one pair duplicated, one item unseen; random features."""
    return random_inputs(N_USERS, N_ITEMS, D_TEXT, D_IMAGE, text=text, image=image, per_user=(2, 5), scale=(2.0, 3.0))


def tiny_model(inputs: ModelInputs, **overrides) -> MGCN:
    torch.manual_seed(0)
    model = build_model("mgcn", inputs, TINY | overrides)
    with torch.no_grad():  # non-zero biases, so that a misplaced bias would show
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0.0, 0.5)
    model.on_epoch_start(0, torch.Generator().manual_seed(0))
    return model


def batch(size: int = 9):
    gen = torch.Generator().manual_seed(1)
    return tuple(torch.randint(n, (size,), generator=gen) for n in (N_USERS, N_ITEMS, N_ITEMS))


# --- dense float64 references, written from MMRec's MGCN independently of the package ----------

# MMRec's parameter names -> ours
MMREC_NAMES = {
    "user_embedding.weight": "user_emb",
    "item_id_embedding.weight": "item_emb",
    "image_embedding.weight": "raw_feat.image",
    "text_embedding.weight": "raw_feat.text",
    "image_trs.weight": "feat_proj.image.weight",
    "image_trs.bias": "feat_proj.image.bias",
    "text_trs.weight": "feat_proj.text.weight",
    "text_trs.bias": "feat_proj.text.bias",
    "gate_v.0.weight": "purifier_gate.image.weight",
    "gate_v.0.bias": "purifier_gate.image.bias",
    "gate_t.0.weight": "purifier_gate.text.weight",
    "gate_t.0.bias": "purifier_gate.text.bias",
    "query_common.0.weight": "query.0.weight",
    "query_common.0.bias": "query.0.bias",
    "query_common.2.weight": "query.2.weight",
    "gate_image_prefer.0.weight": "prefer_gate.image.weight",
    "gate_image_prefer.0.bias": "prefer_gate.image.bias",
    "gate_text_prefer.0.weight": "prefer_gate.text.weight",
    "gate_text_prefer.0.bias": "prefer_gate.text.bias",
}


def float64_parameters(model: MGCN) -> dict[str, torch.Tensor]:
    """MMRec's parameter names -> float64 leaf copies of ours (those the model has)."""
    ours = dict(model.named_parameters())
    return {k: ours[v].detach().double().clone().requires_grad_() for k, v in MMREC_NAMES.items() if v in ours}


def random_fuser_parameters(d: int) -> dict[str, torch.Tensor]:
    """Random query_common and preference gates, for the one-modality case (where ours has none)."""
    gen = torch.Generator().manual_seed(5)
    shapes = {
        "query_common.0.weight": (d, d),
        "query_common.0.bias": (d,),
        "query_common.2.weight": (1, d),
        "gate_image_prefer.0.weight": (d, d),
        "gate_image_prefer.0.bias": (d,),
        "gate_text_prefer.0.weight": (d, d),
        "gate_text_prefer.0.bias": (d,),
    }
    return {k: torch.randn(s, generator=gen).double() for k, s in shapes.items()}


def linear(params, name, x):
    out = x @ params[f"{name}.weight"].T
    return out + params[f"{name}.bias"] if f"{name}.bias" in params else out


def dense_knn_graph(features: torch.Tensor, k: int) -> torch.Tensor:
    """MMRec build_sim + build_knn_normalized_graph(is_sparse=True, norm_type='sym'), dense float64:
    top-k cosine similarities per row (the item itself included), D^-1/2 S D^-1/2, D the row sums."""
    unit = features / features.norm(p=2, dim=-1, keepdim=True)
    sim = unit @ unit.T
    values, indices = torch.topk(sim, k, dim=-1)
    adj = torch.zeros_like(sim).scatter_(-1, indices, values)
    inv_sqrt = adj.sum(-1).pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    return inv_sqrt[:, None] * adj * inv_sqrt[None, :]


def dense_norm_adj(inputs: ModelInputs) -> torch.Tensor:
    """MMRec get_adj_mat, dense float64: D^-1/2 A D^-1/2 of the binary (users + items) graph, 1/0 as 0."""
    n = N_USERS + N_ITEMS
    adj = torch.zeros(n, n, dtype=torch.float64)
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, N_USERS + i] = adj[N_USERS + i, u] = 1.0
    inv_sqrt = adj.sum(1).pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    return inv_sqrt[:, None] * adj * inv_sqrt[None, :]


def mmrec_fuser(params, views: dict[str, torch.Tensor], content: torch.Tensor) -> torch.Tensor:
    """MMRec's behaviour-aware fuser over the views given (image first, as MMRec concatenates).
    With both modalities this is MMRec's code line by line; with one, its attention has one entry."""
    names = [m for m in ("image", "text") if m in views]
    prefer = {"image": "gate_image_prefer.0", "text": "gate_text_prefer.0"}

    def query_common(x):
        return linear(params, "query_common.2", torch.tanh(linear(params, "query_common.0", x)))

    att_common = torch.cat([query_common(views[m]) for m in names], dim=-1)  # [N, M]
    weight_common = torch.softmax(att_common, dim=-1)
    common = sum(weight_common[:, j].unsqueeze(1) * views[m] for j, m in enumerate(names))
    seps = [torch.sigmoid(linear(params, prefer[m], content)) * (views[m] - common) for m in names]
    return (sum(seps) + common) / (len(names) + 1)


def mmrec_forward(params, inputs: ModelInputs, n_ui_layers: int, n_layers: int, k: int):
    """MMRec MGCN.forward(norm_adj, train=True), dense float64: (users, items, side, content)."""
    adj = dense_norm_adj(inputs)
    r = adj[:N_USERS, N_USERS:]
    purified, views = {}, {}
    for m, gate in (("image", "gate_v.0"), ("text", "gate_t.0")):
        if f"{m}_embedding.weight" not in params:
            continue
        projected = linear(params, f"{m}_trs", params[f"{m}_embedding.weight"])
        purified[m] = params["item_id_embedding.weight"] * torch.sigmoid(linear(params, gate, projected))
    ego = torch.cat([params["user_embedding.weight"], params["item_id_embedding.weight"]], dim=0)
    layers = [ego]
    for _ in range(n_ui_layers):
        ego = adj @ ego
        layers.append(ego)
    content = torch.stack(layers, dim=1).mean(dim=1)
    for m, items in purified.items():
        item_adj = dense_knn_graph(getattr(inputs, f"{m}_feat").double(), k)  # from the initial features
        for _ in range(n_layers):
            items = item_adj @ items
        views[m] = torch.cat([r @ items, items], dim=0)
    side = mmrec_fuser(params, views, content)
    final = content + side
    return final[:N_USERS], final[N_USERS:], side, content


def mmrec_infonce(view1, view2, temperature):
    """MMRec MGCN.InfoNCE, as written (exp, sum, log, mean)."""
    view1, view2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    pos_score = torch.exp((view1 * view2).sum(dim=-1) / temperature)
    ttl_score = torch.exp(view1 @ view2.T / temperature).sum(dim=1)
    return torch.mean(-torch.log(pos_score / ttl_score))


def mmrec_calculate_loss(params, inputs, config, users, pos, neg):
    """MMRec MGCN.calculate_loss, float64 (train_batch_size = this batch's size)."""
    ua, ia, side, content = mmrec_forward(params, inputs, config["n_ui_layers"], config["n_layers"], config["knn_k"])
    u, p, n = ua[users], ia[pos], ia[neg]
    pos_scores, neg_scores = (u * p).sum(1), (u * n).sum(1)
    regularizer = (0.5 * (u**2).sum() + 0.5 * (p**2).sum() + 0.5 * (n**2).sum()) / len(users)
    mf_loss = -torch.mean(F.logsigmoid(pos_scores - neg_scores))
    emb_loss = config["reg_weight"] * regularizer
    side_users, side_items = side[:N_USERS], side[N_USERS:]
    content_users, content_items = content[:N_USERS], content[N_USERS:]
    cl_loss = mmrec_infonce(side_items[pos], content_items[pos], 0.2) + mmrec_infonce(
        side_users[users], content_users[users], 0.2
    )
    return mf_loss + emb_loss + 0.0 + config["cl_loss"] * cl_loss


# --- the distinctive computations ---------------------------------------------------------------


@pytest.mark.parametrize("modality", ["text", "image"])
def test_purifier_gates_item_ids_with_projected_features(modality):
    """x_m = item ID * sigmoid(gate(trs(raw features))), per item."""
    model = tiny_model(tiny_inputs())
    params = float64_parameters(model)
    raw = params[f"{modality}_embedding.weight"]
    trs, gate = ("image_trs", "gate_v.0") if modality == "image" else ("text_trs", "gate_t.0")
    expected = params["item_id_embedding.weight"] * torch.sigmoid(linear(params, gate, linear(params, trs, raw)))
    with torch.no_grad():
        assert torch.allclose(model.purified_items(modality).double(), expected, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_item_graphs_match_mmrecs_dense_knn_laplacian_and_stay_sparse(k):
    inputs = tiny_inputs()
    model = tiny_model(inputs, knn_k=k)
    for m in ("text", "image"):
        adj, adj_t = getattr(model, f"item_adj_{m}"), getattr(model, f"item_adj_{m}_t")
        assert adj.layout == torch.sparse_csr and adj_t.layout == torch.sparse_csr
        assert adj._nnz() == N_ITEMS * k  # k entries a row, the item itself among them
        expected = dense_knn_graph(getattr(inputs, f"{m}_feat").double(), k)
        assert torch.allclose(adj.to_dense().double(), expected, atol=1e-6)
        assert torch.equal(adj_t.to_dense(), adj.to_dense().T)
        assert (adj.to_dense().diagonal() > 0).all()


def test_item_graphs_are_built_once_from_the_raw_features_and_frozen():
    """The raw features train (MMRec's from_pretrained(freeze=False)); the graphs stay those of the
    initial features and are not saved in checkpoints."""
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    before = {m: getattr(model, f"item_adj_{m}").to_dense().clone() for m in ("text", "image")}
    optimiser = torch.optim.Adam(model.parameters(), lr=0.5)
    for _ in range(3):
        optimiser.zero_grad()
        model.loss(*batch()).backward()
        optimiser.step()
        model.on_epoch_start(1, torch.Generator().manual_seed(1))
    assert not torch.allclose(model.raw_feat["image"].detach(), inputs.image_feat)  # the features trained
    for m, adj in before.items():
        assert torch.equal(getattr(model, f"item_adj_{m}").to_dense(), adj)
    keys = set(model.state_dict())
    assert {"raw_feat.text", "raw_feat.image", "user_emb", "query.2.weight"} <= keys
    assert not {k for k in keys if k.startswith(("item_adj", "user_item", "item_user"))}


def test_fuser_is_mmrecs_attention_common_and_specific_split():
    model = tiny_model(tiny_inputs())
    params = float64_parameters(model)
    gen = torch.Generator().manual_seed(2)
    n = N_USERS + N_ITEMS
    views = {m: torch.randn(n, 8, generator=gen).double() for m in ("image", "text")}
    content = torch.randn(n, 8, generator=gen).double()
    expected = mmrec_fuser(params, views, content)
    with torch.no_grad():
        ours = model.fuse({m: views[m].float() for m in ("text", "image")}, content.float())  # our order: text first
    assert torch.allclose(ours.double(), expected, atol=1e-6)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_one_modality_fuser_is_the_attention_over_one_view(modality):
    """With one modality the attention weight is 1, the specific part 0: side = view / 2 whatever the
    query and preference gates are, so the model builds neither."""
    model = tiny_model(tiny_inputs(text=modality == "text", image=modality == "image"))
    assert not hasattr(model, "query") and not hasattr(model, "prefer_gate")
    assert list(model.feat_proj) == list(model.purifier_gate) == [modality]
    gen = torch.Generator().manual_seed(3)
    view, content = torch.randn(2, N_USERS + N_ITEMS, 8, generator=gen).double()
    expected = mmrec_fuser(random_fuser_parameters(8), {modality: view}, content)
    assert torch.allclose(expected, view / 2, atol=1e-12)
    assert torch.allclose(model.fuse({modality: view.float()}, content.float()).double(), expected, atol=1e-6)


def test_infonce_rows_are_mmrecs_infonce_before_its_mean():
    gen = torch.Generator().manual_seed(4)
    view1, view2 = 3.0 * torch.randn(2, 6, 8, generator=gen).double()
    for temperature in (0.2, 0.7):
        rows = infonce_rows(view1, view2, temperature)
        assert rows.shape == (6,)
        assert torch.allclose(rows.mean(), mmrec_infonce(view1, view2, temperature), atol=1e-10)
    identical = infonce_rows(view1, view1, 0.2)  # the same views: each row's positive is its largest logit
    assert (identical < infonce_rows(view1, view2, 0.2)).all()


@pytest.mark.parametrize(("n_ui_layers", "n_layers"), [(2, 1), (0, 0), (1, 2), (3, 1)])
@pytest.mark.parametrize("features", list(FEATURE_SETS))
def test_forward_matches_mmrecs_forward(features, n_ui_layers, n_layers):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, n_ui_layers=n_ui_layers, n_layers=n_layers)
    params = float64_parameters(model) | ({} if features == "both" else random_fuser_parameters(8))
    users, items, side, content = mmrec_forward(params, inputs, n_ui_layers, n_layers, 3)
    emb = model.eval_embeddings()
    assert torch.allclose(emb.users.double(), users, atol=1e-5)
    assert torch.allclose(emb.items.double(), items, atol=1e-5)
    assert torch.allclose(emb.extras["side"].double(), side, atol=1e-5)
    assert torch.allclose(emb.extras["content"].double(), content, atol=1e-5)
    assert torch.allclose(model.scores(emb, torch.tensor([2])).double(), users[2] @ items.T, atol=1e-5)


@pytest.mark.parametrize("features", list(FEATURE_SETS))
@pytest.mark.parametrize("overrides", [{}, {"n_ui_layers": 1, "n_layers": 2, "reg_weight": 0.0, "cl_loss": 1.0}])
def test_loss_and_gradients_match_mmrec_calculate_loss(features, overrides):
    """loss = mean(sample_losses) + regularization equals MMRec's calculate_loss (BPR + emb reg +
    cl_loss x the two InfoNCE) for the same parameters and batch, and so does every parameter's gradient."""
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, **overrides)
    users, pos, neg = batch()
    loss = model.loss(users, pos, neg)
    loss.backward()
    assert float(model.regularization(model.propagate(), users, pos, neg)) == 0.0
    params = float64_parameters(model)
    config = default_hparams("mgcn") | TINY | overrides
    extra = {} if features == "both" else random_fuser_parameters(8)
    expected = mmrec_calculate_loss(params | extra, inputs, config, users, pos, neg)
    expected.backward()
    assert torch.isclose(loss.double(), expected, atol=1e-5), (loss, expected)
    ours = dict(model.named_parameters())
    assert set(ours) == {MMREC_NAMES[k] for k in params}  # every parameter compared
    for mmrec_name, param in params.items():
        assert torch.allclose(ours[MMREC_NAMES[mmrec_name]].grad.double(), param.grad, atol=1e-5), mmrec_name


def test_sample_losses_are_bpr_emb_and_contrast_rows():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    users, pos, neg = batch()
    emb = model.eval_embeddings()
    rows = model.sample_losses(emb, users, pos, neg)
    assert rows.shape == (len(users),)
    no_cl = tiny_model(inputs, cl_loss=0.0).sample_losses(emb, users, pos, neg)
    side, content = emb.extras["side"], emb.extras["content"]
    contrast = infonce_rows(side[pos + N_USERS], content[pos + N_USERS], 0.2) + infonce_rows(
        side[users], content[users], 0.2
    )
    assert torch.allclose(rows, no_cl + 0.3 * contrast, atol=1e-6)
    assert not torch.equal(rows, model.sample_losses(emb, users, pos, (neg + 1) % N_ITEMS))  # negatives count
    assert get_class("mgcn").needs_negatives and get_class("mgcn").train_propagate_equals_eval


def test_rejects_featureless_data_and_a_k_above_the_items():
    with pytest.raises(ValueError, match="features"):
        tiny_model(tiny_inputs(text=False, image=False))
    with pytest.raises(ValueError, match="knn_k=12"):
        tiny_model(tiny_inputs(), knn_k=12)


# --- config ----------------------------------------------------------------------------------------

# MMRec src/configs/model/MGCN.yaml, written out (grids: the value we default to; learning_rate
# 0.001 is the trainer's; lambda_coeff 0.9 is read by no code of MMRec's MGCN)
MMREC_MGCN_YAML = {
    "embedding_size": 64,
    "n_ui_layers": 2,
    "n_layers": 1,
    "knn_k": 10,
    "reg_weight": 1e-4,
    "cl_loss": 0.001,  # grid [0.001, 0.01, 0.1]
    "temperature": 0.2,  # hard-coded in MMRec's calculate_loss
}


def test_config_defaults_grid_and_train_defaults_are_mmrecs():
    assert default_hparams("mgcn") == pytest.approx(MMREC_MGCN_YAML)
    assert get_class("mgcn").Config.grid == {"model.cl_loss": (0.001, 0.01, 0.1)}
    train_config = resolve_run_config("mgcn").train
    assert train_config.lr_scheduler == [0.96, 50.0] and train_config.lr == 1e-3
    assert get_class("mgcn").display_name == "MGCN" and get_class("mgcn").uses_features


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("embedding_size", 0, "must be >= 1"),
        ("n_ui_layers", -1, "must be >= 0"),
        ("n_layers", -1, "must be >= 0"),
        ("knn_k", 0, "must be >= 1"),
        ("reg_weight", -1e-4, "must be >= 0"),
        ("cl_loss", -0.1, "must be >= 0"),
        ("temperature", 0.0, "must be > 0"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"model\.{key} {message}"):
        resolve_run_config("mgcn", overrides={"model": {key: value}})
