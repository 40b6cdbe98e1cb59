"""LGMRec: graphs, local and global (hypergraph) embeddings and MMRec's calculate_loss against
dense float64 re-implementations of MMRec's code, with the Gumbel noise and dropout masks drawn
as MMRec draws them; randomness; config. (Determinism, resume and GUIDER on top:
tests/test_backbone_training.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import random_inputs

import guider.models.lgmrec  # noqa: F401  (registers the backbone)
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class
from guider.models.lgmrec import infonce_rows

N_USERS, N_ITEMS, D_TEXT, D_IMAGE = 7, 11, 6, 5
TINY = {
    "embedding_size": 8,
    "hyper_num": 3,
    "keep_rate": 0.6,
    "alpha": 0.7,
    "cl_weight": 0.3,
    "reg_weight": 0.05,
}
KEYS = {"image": "v", "text": "t"}  # MMRec's modality prefixes
MMREC_NAMES = {  # MMRec's parameter names -> ours
    "user_embedding.weight": "user_emb",
    "item_id_embedding.weight": "item_emb",
    "item_image_trs": "feat_trs.image",
    "v_hyper": "hyper.image",
    "item_text_trs": "feat_trs.text",
    "t_hyper": "hyper.text",
}


def tiny_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    return random_inputs(N_USERS, N_ITEMS, D_TEXT, D_IMAGE, text=text, image=image, per_user=(2, 5))


def tiny_model(inputs: ModelInputs, **overrides):
    torch.manual_seed(0)
    return build_model("lgmrec", inputs, TINY | overrides)


def batch(size: int = 9):
    gen = torch.Generator().manual_seed(1)
    inputs = tiny_inputs()
    rows = torch.randint(len(inputs.train_users), (size,), generator=gen)
    users = torch.from_numpy(inputs.train_users)[rows]
    pos = torch.from_numpy(inputs.train_items)[rows]
    neg = torch.randint(N_ITEMS, (size,), generator=gen)
    return users, pos, neg


# --- dense float64 re-implementation of MMRec's LGMRec, independent of the package --------------


def dense_graphs(inputs: ModelInputs) -> dict[str, torch.Tensor]:
    """MMRec's adj (binary users x items), norm_adj D^-1/2 A D^-1/2 and num_inters 1 / degree,
    degrees (A > 0).sum + 1e-7, dense float64."""
    inter = np.zeros((N_USERS, N_ITEMS))
    inter[inputs.train_users, inputs.train_items] = 1.0  # MMRec's dok matrix: one entry per pair
    n = N_USERS + N_ITEMS
    adj = np.zeros((n, n))
    adj[:N_USERS, N_USERS:] = inter
    adj[N_USERS:, :N_USERS] = inter.T
    degree = (adj > 0).sum(1)
    inv_sqrt = np.power(degree + 1e-7, -0.5)
    norm_adj = inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    return {
        "adj": torch.from_numpy(inter),
        "norm_adj": torch.from_numpy(norm_adj),
        "num_inters": torch.from_numpy(1.0 / (degree + 1e-7))[:, None],
    }


def mmrec_draws(hyper_num: int, keep_rate: float, modalities, gumbel: bool, dropout: bool):
    """MMRec's forward's random draws from torch's global RNG, in its order: the Gumbel noise of
    F.gumbel_softmax (-log of a float32 Exp(1)) for iv, uv, then it, ut; then the nn.Dropout masks
    (scaled by 1 / keep_rate) in the same order. Zeros / ones where nothing is drawn."""
    shapes = [shape for _ in modalities for shape in ((N_ITEMS, hyper_num), (N_USERS, hyper_num))]
    noise = [-torch.empty(s).exponential_().log() if gumbel else torch.zeros(s) for s in shapes]
    masks = [F.dropout(torch.ones(s), 1 - keep_rate, training=True) if dropout else torch.ones(s) for s in shapes]
    return [x.double() for x in noise], [x.double() for x in masks]


def float64_parameters(model) -> dict[str, torch.Tensor]:
    ours = dict(model.named_parameters())
    return {k: ours[v].detach().double().clone().requires_grad_() for k, v in MMREC_NAMES.items() if v in ours}


def mmrec_forward(params, inputs, config, draws, modalities=("v", "t")):
    """MMRec's forward (users, items, {hyper embeddings}) in float64. With one modality (where
    MMRec fails) the same formulas with the modality present."""
    graphs = dense_graphs(inputs)
    adj, norm_adj, num_inters = graphs["adj"], graphs["norm_adj"], graphs["num_inters"]
    feats = {"v": inputs.image_feat, "t": inputs.text_feat}
    tau, noise, masks = config["tau"], *draws
    item_hyper, user_hyper = {}, {}
    for k, key in enumerate(modalities):
        item_logits = feats[key].double() @ params[f"{key}_hyper"]
        user_logits = adj @ item_logits
        item_hyper[key] = torch.softmax((item_logits + noise[2 * k]) / tau, dim=1)
        user_hyper[key] = torch.softmax((user_logits + noise[2 * k + 1]) / tau, dim=1)
    ego = torch.cat([params["user_embedding.weight"], params["item_id_embedding.weight"]])
    layers = [ego]
    for _ in range(config["n_ui_layers"] if config["cf_model"] == "lightgcn" else 0):
        layers.append(norm_adj @ layers[-1])
    cge = torch.stack(layers, dim=1).mean(dim=1)
    mge = 0
    for key in modalities:
        trs = params["item_image_trs" if key == "v" else "item_text_trs"]
        item_feats = feats[key].double() @ trs
        x = torch.cat([(adj @ item_feats) * num_inters[:N_USERS], item_feats])
        for _ in range(config["n_mm_layers"]):
            x = norm_adj @ x
        mge = mge + F.normalize(x)
    hyper = {}
    for k, key in enumerate(modalities):
        i_hyper, u_hyper = item_hyper[key] * masks[2 * k], user_hyper[key] * masks[2 * k + 1]
        i_ret = cge[N_USERS:]
        for _ in range(config["n_hyper_layer"]):
            lat = i_hyper.T @ i_ret
            i_ret = i_hyper @ lat
            u_ret = u_hyper @ lat
        hyper[f"u{key}"], hyper[f"i{key}"] = u_ret, i_ret
    ghe = sum(torch.cat([hyper[f"u{key}"], hyper[f"i{key}"]]) for key in modalities)
    final = cge + mge + config["alpha"] * F.normalize(ghe)
    return final[:N_USERS], final[N_USERS:], hyper


def ssl_triple_loss(emb1, emb2, all_emb, tau):
    n1, n2, n_all = F.normalize(emb1), F.normalize(emb2), F.normalize(all_emb)
    pos_score = torch.exp((n1 * n2).sum(dim=1) / tau)
    ttl_score = torch.exp(n1 @ n_all.T / tau).sum(dim=1)
    return -torch.log(pos_score / ttl_score)  # [B]: MMRec sums these


def mmrec_calculate_loss(params, inputs, config, draws, users, pos, neg, modalities=("v", "t")):
    """MMRec calculate_loss: bpr (mean) + cl_weight * hcl (sums) + reg_weight * EmbLoss, float64."""
    user, item, hyper = mmrec_forward(params, inputs, config, draws, modalities)
    u, p, n = user[users], item[pos], item[neg]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
    reg = (torch.linalg.norm(u) + torch.linalg.norm(p) + torch.linalg.norm(n)) / len(users)
    loss = bpr + config["reg_weight"] * reg
    if len(modalities) == 2:
        tau = config["tau"]
        hcl = ssl_triple_loss(hyper["uv"][users], hyper["ut"][users], hyper["ut"], tau).sum()
        hcl = hcl + ssl_triple_loss(hyper["iv"][pos], hyper["it"][pos], hyper["it"], tau).sum()
        loss = loss + config["cl_weight"] * hcl
    return loss


def config_of(**overrides) -> dict:
    return default_hparams("lgmrec") | TINY | overrides


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.double(), b, rtol=1e-4, atol=1e-5)


# --- the model against the references ------------------------------------------------------------


def test_graphs_match_mmrec_dense_matrices():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    graphs = dense_graphs(inputs)
    assert torch.equal(model.user_item.to_dense().double(), graphs["adj"])  # the duplicated pair counts once
    assert torch.equal(model.item_user.to_dense().double(), graphs["adj"].T)
    assert torch.allclose(model.norm_adj.to_dense().double(), graphs["norm_adj"], atol=1e-7)
    assert torch.allclose(model.inv_user_degree.double(), graphs["num_inters"][:N_USERS], rtol=1e-6)
    assert model.user_item.layout == model.norm_adj.layout == torch.sparse_csr


def test_reference_draws_are_those_of_torchs_gumbel_softmax_and_dropout():
    """The reference's noise model: F.gumbel_softmax adds -log(Exp(1)) drawn for the logits'
    shape; a dropout mask depends on the shape only (so drawing it on ones gives MMRec's)."""
    gen = torch.Generator().manual_seed(4)
    logits = [torch.randn(N_ITEMS, 3, generator=gen), torch.randn(N_USERS, 3, generator=gen)]  # iv, uv
    torch.manual_seed(9)
    soft = [F.gumbel_softmax(x, tau=0.2, hard=False, dim=1) for x in logits]
    dropped = [F.dropout(x, 0.4, training=True) for x in soft]
    torch.manual_seed(9)
    noise, masks = mmrec_draws(3, 0.6, "v", gumbel=True, dropout=True)
    for x, s, d, g, mask in zip(logits, soft, dropped, noise, masks):
        expected = torch.softmax((x.double() + g) / 0.2, dim=1)
        assert torch.allclose(s.double(), expected, atol=1e-6)
        assert torch.allclose(d.double(), expected * mask, atol=1e-6)
        assert set(mask.unique().tolist()) == {0.0, float(torch.tensor(1 / 0.6))}  # float32 scale, as torch


LAYER_CASES = [  # (n_ui_layers, n_mm_layers, n_hyper_layer, cf_model)
    (2, 2, 1, "lightgcn"),
    (3, 1, 2, "lightgcn"),
    (1, 3, 3, "lightgcn"),
    (0, 2, 1, "lightgcn"),
    (2, 0, 2, "lightgcn"),
    (2, 2, 1, "mf"),
]
MODES = {  # our mode -> (Gumbel noise drawn, dropout drawn)
    "train": (True, True),
    "eval": (True, False),  # MMRec's evaluation: Gumbel noise, no dropout
    "eval, eval_gumbel_noise off": (False, False),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("n_ui", "n_mm", "n_hyper", "cf_model"), LAYER_CASES)
def test_forward_matches_mmrec(mode, n_ui, n_mm, n_hyper, cf_model):
    """Local (CGE mean of layers, MGE last layer from the users' mean features), global
    (Gumbel-softmax assignments, dropout, hypergraph message passing) and their fusion, with
    the random draws of MMRec's forward for the same RNG state."""
    inputs = tiny_inputs()
    layers = {"n_ui_layers": n_ui, "n_mm_layers": n_mm, "n_hyper_layer": n_hyper, "cf_model": cf_model}
    model = tiny_model(inputs, eval_gumbel_noise=mode != "eval, eval_gumbel_noise off", **layers)
    model.train(mode == "train")
    torch.manual_seed(5)
    with torch.no_grad():
        emb = model.propagate()
    torch.manual_seed(5)
    draws = mmrec_draws(3, 0.6, "vt", *MODES[mode])
    user, item, hyper = mmrec_forward(float64_parameters(model), inputs, config_of(**layers), draws)
    assert close(emb.users, user) and close(emb.items, item)
    for modality, key in KEYS.items():
        assert close(emb.extras["hyper_users"][modality], hyper[f"u{key}"])
        assert close(emb.extras["hyper_items"][modality], hyper[f"i{key}"])


@pytest.mark.parametrize("overrides", [{}, {"n_ui_layers": 3, "n_mm_layers": 1, "n_hyper_layer": 2}, {"tau": 0.5}])
def test_loss_and_gradients_match_mmrec_calculate_loss(overrides):
    """mean(sample_losses) + regularization = MMRec's calculate_loss (bpr + cl_weight * hcl +
    reg_weight * reg) in training, for the same parameters, batch and draws, and so do the
    gradients of every parameter."""
    inputs = tiny_inputs()
    model = tiny_model(inputs, **overrides)
    model.train()
    users, pos, neg = batch()
    torch.manual_seed(6)
    loss = model.loss(users, pos, neg)
    loss.backward()
    params = float64_parameters(model)
    torch.manual_seed(6)
    draws = mmrec_draws(3, 0.6, "vt", gumbel=True, dropout=True)
    expected = mmrec_calculate_loss(params, inputs, config_of(**overrides), draws, users, pos, neg)
    expected.backward()
    assert torch.isclose(loss.double(), expected, rtol=1e-5), (loss, expected)
    ours = dict(model.named_parameters())
    assert set(ours) == set(MMREC_NAMES.values())  # every parameter compared
    for mmrec_name, our_name in MMREC_NAMES.items():
        assert close(ours[our_name].grad, params[mmrec_name].grad), mmrec_name


def test_sample_losses_are_bpr_plus_the_batch_sized_contrastive_rows():
    """Row b = bpr_b + cl_weight * B * (user InfoNCE row + item InfoNCE row): the mean over the
    batch is MMRec's bpr mean + cl_weight * (its sums); the EmbLoss is the regulariser."""
    inputs = tiny_inputs()
    model = tiny_model(inputs, eval_gumbel_noise=False)
    users, pos, neg = batch()
    emb = model.eval_embeddings()
    user, item, hyper = mmrec_forward(
        float64_parameters(model), inputs, config_of(), mmrec_draws(3, 0.6, "vt", False, False)
    )
    bpr = -F.logsigmoid((user[users] * item[pos]).sum(1) - (user[users] * item[neg]).sum(1))
    rows = ssl_triple_loss(hyper["uv"][users], hyper["ut"][users], hyper["ut"], 0.2)
    rows = rows + ssl_triple_loss(hyper["iv"][pos], hyper["it"][pos], hyper["it"], 0.2)
    with torch.no_grad():
        per_sample = model.sample_losses(emb, users, pos, neg)
        reg = model.regularization(emb, users, pos, neg)
    assert per_sample.shape == (len(users),)
    assert close(per_sample, bpr + 0.3 * len(users) * rows)
    u, p, n = user[users], item[pos], item[neg]
    expected_reg = 0.05 * (torch.linalg.norm(u) + torch.linalg.norm(p) + torch.linalg.norm(n)) / len(users)
    assert close(reg, expected_reg)


@pytest.mark.parametrize(("text", "image", "key"), [(False, True, "v"), (True, False, "t")], ids=["image", "text"])
def test_one_modality_uses_it_locally_and_globally_without_the_contrast(text, image, key):
    """MMRec fails with one modality; here its formulas run on the modality present and the
    image-text contrastive loss is absent. Only that modality's modules are built."""
    inputs = tiny_inputs(text=text, image=image)
    model = tiny_model(inputs)
    modality = "image" if image else "text"
    assert list(model.feat_trs) == list(model.hyper) == [modality] and model.modalities == [modality]
    model.train()
    users, pos, neg = batch()
    torch.manual_seed(7)
    emb = model.propagate()
    loss = model.loss(users, pos, neg, emb=emb)
    loss.backward()
    params = float64_parameters(model)
    torch.manual_seed(7)
    draws = mmrec_draws(3, 0.6, key, gumbel=True, dropout=True)
    expected = mmrec_calculate_loss(params, inputs, config_of(), draws, users, pos, neg, modalities=(key,))
    expected.backward()
    assert torch.isclose(loss.double(), expected, rtol=1e-5), (loss, expected)
    for mmrec_name, param in params.items():
        assert close(dict(model.named_parameters())[MMREC_NAMES[mmrec_name]].grad, param.grad), mmrec_name
    with torch.no_grad():
        bpr = -F.logsigmoid((emb.users[users] * emb.items[pos]).sum(1) - (emb.users[users] * emb.items[neg]).sum(1))
        assert torch.allclose(model.sample_losses(emb, users, pos, neg), bpr)


def test_infonce_rows_match_a_float64_log_softmax():
    gen = torch.Generator().manual_seed(2)
    anchors, candidates = torch.randn(5, 4, generator=gen), torch.randn(9, 4, generator=gen)
    targets = torch.tensor([0, 3, 3, 8, 1])
    for tau in (0.2, 1.0, 0.05):
        logits = F.normalize(anchors.double()) @ F.normalize(candidates.double()).T / tau
        expected = -torch.log_softmax(logits, dim=1)[torch.arange(5), targets]
        rows = infonce_rows(anchors, candidates, targets, tau)
        assert torch.allclose(rows.double(), expected, rtol=1e-5, atol=1e-5), tau


def test_randomness_comes_from_torchs_global_rng_and_the_flag_is_honest():
    model = tiny_model(tiny_inputs())
    model.train()

    def forward(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model.propagate().users

    assert torch.equal(forward(1), forward(1)) and not torch.equal(forward(1), forward(2))
    torch.manual_seed(1)
    noisy_eval = model.eval_embeddings().users  # MMRec's evaluation draws Gumbel noise too
    assert not torch.equal(noisy_eval, model.eval_embeddings().users)
    assert not torch.equal(forward(1), noisy_eval) and model.training
    quiet = tiny_model(tiny_inputs(), eval_gumbel_noise=False)
    assert torch.equal(quiet.eval_embeddings().users, quiet.eval_embeddings().users)
    cls = get_class("lgmrec")
    assert not cls.train_propagate_equals_eval and cls.needs_negatives and cls.uses_features


def test_frozen_inputs_stay_out_of_checkpoints_and_are_not_copied():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    keys = set(model.state_dict())
    assert keys == {"user_emb", "item_emb", "feat_trs.image", "feat_trs.text", "hyper.image", "hyper.text"}
    assert model.image_feat.data_ptr() == inputs.image_feat.data_ptr()
    assert model.text_feat.data_ptr() == inputs.text_feat.data_ptr()
    with pytest.raises(ValueError, match="features"):
        tiny_model(tiny_inputs(text=False, image=False))


# --- config ----------------------------------------------------------------------------------------

# MMRec src/configs/model/LGMRec.yaml, written out (its active Baby block; every grid has one value),
# plus tau (hard-coded 0.2 in MMRec's lgmrec.py) and eval_gumbel_noise (MMRec's behaviour: on)
MMREC_LGMREC = {
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
}


def test_config_defaults_and_grid_are_mmrecs():
    assert default_hparams("lgmrec") == pytest.approx(MMREC_LGMREC)
    assert get_class("lgmrec").Config.grid == {
        "model.n_ui_layers": (2,),
        "model.n_mm_layers": (2,),
        "model.n_hyper_layer": (1,),
        "model.hyper_num": (4,),
        "model.keep_rate": (0.5,),
        "model.alpha": (0.3,),
        "model.cl_weight": (1e-4,),
        "model.reg_weight": (1e-6,),
    }
    train_config = resolve_run_config("lgmrec").train
    assert train_config.lr == 1e-3 and train_config.weight_decay == 0.0
    assert get_class("lgmrec").display_name == "LGMRec"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cf_model", "ngcf", "must be one of lightgcn, mf"),
        ("embedding_size", 0, "must be >= 1"),
        ("n_ui_layers", -1, "must be >= 0"),
        ("n_mm_layers", -1, "must be >= 0"),
        ("n_hyper_layer", 0, "must be >= 1"),
        ("hyper_num", 0, "must be >= 1"),
        ("keep_rate", 0.0, "must be > 0"),
        ("keep_rate", 1.5, "must be <= 1"),
        ("alpha", -0.1, "must be >= 0"),
        ("cl_weight", -1e-4, "must be >= 0"),
        ("reg_weight", -1e-6, "must be >= 0"),
        ("tau", 0.0, "must be > 0"),
        ("eval_gumbel_noise", "yes", "must be true or false"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"model\.{key} {message}"):
        resolve_run_config("lgmrec", overrides={"model": {key: value}})
