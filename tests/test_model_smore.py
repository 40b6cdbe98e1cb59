"""SMORE: the spectral denoising and fusion against an explicit float64 DFT, the modality kNN
graphs and their max-pooled fusion, the item-item, user-item and preference views, and the
loss and its gradients against a dense float64 re-implementation of MMRec's SMORE; the
dropout on the preference gates; one modality; the typed config."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import random_inputs

import guider.models.smore  # noqa: F401  (registers the backbone)
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class
from guider.models.smore import SMORE, spectrum_fusion

N_USERS, N_ITEMS, D_TEXT, D_IMAGE = 7, 11, 6, 5
TINY = {"embedding_size": 8, "image_knn_k": 3, "text_knn_k": 4, "n_ui_layers": 2, "n_layers": 2, "dropout_rate": 0.0}
FEATURE_SETS = {"both": (True, True), "text": (True, False), "image": (False, True)}

# MMRec src/configs/model/SMORE.yaml, written out; lists: the authors' best on Baby (README)
MMREC_SMORE_YAML = {
    "embedding_size": 64,
    "n_ui_layers": 4,  # [3, 4]
    "n_layers": 1,
    "image_knn_k": 40,  # [10, 15, 20, 40]
    "text_knn_k": 15,  # [10, 15, 20, 40]
    "reg_weight": 1e-4,  # [1e-5, 1e-4]
    "cl_loss": 0.01,
    "temperature": 0.2,
    "dropout_rate": 0.1,  # [0, 0.1]
}
MMREC_SMORE_GRID = {
    "model.n_ui_layers": (3, 4),
    "model.image_knn_k": (10, 15, 20, 40),
    "model.text_knn_k": (10, 15, 20, 40),
    "model.reg_weight": (1e-5, 1e-4),
    "model.dropout_rate": (0.0, 0.1),
}


def tiny_inputs(text: bool = True, image: bool = True, seed: int = 0) -> ModelInputs:
    return random_inputs(N_USERS, N_ITEMS, D_TEXT, D_IMAGE, text=text, image=image, seed=seed)


def tiny_model(inputs: ModelInputs, seed: int = 0, **overrides) -> SMORE:
    torch.manual_seed(seed)
    model = build_model("smore", inputs, TINY | overrides)
    model.on_epoch_start(0, torch.Generator().manual_seed(seed))
    return model


def batch(size: int = 16):
    gen = torch.Generator().manual_seed(1)
    return tuple(torch.randint(n, (size,), generator=gen) for n in (N_USERS, N_ITEMS, N_ITEMS))


def raw_features(inputs: ModelInputs) -> dict[str, torch.Tensor]:
    found = {"image": inputs.image_feat, "text": inputs.text_feat}  # MMRec's order: image, text
    return {m: f for m, f in found.items() if f is not None}


def double_params(model):
    return {name: p.detach().double().clone().requires_grad_(True) for name, p in model.named_parameters()}


# --- an explicit DFT (no torch.fft) -------------------------------------------------------------
def dft_matrix(n: int) -> np.ndarray:
    """[n//2+1, n] rows k of the orthonormal DFT exp(-2 pi i k t / n) / sqrt(n), k = 0..n//2."""
    k, t = np.arange(n // 2 + 1)[:, None], np.arange(n)[None, :]
    return np.exp(-2j * np.pi * k * t / n) / np.sqrt(n)


def inverse_dft_matrix(n: int) -> np.ndarray:
    """[n, n] the orthonormal inverse DFT exp(+2 pi i k t / n) / sqrt(n)."""
    k, t = np.arange(n)[:, None], np.arange(n)[None, :]
    return np.exp(2j * np.pi * k * t / n) / np.sqrt(n)


def hermitian_full(half: torch.Tensor, n: int) -> torch.Tensor:
    """[rows, n] the spectrum of a real signal from its bins 0..n//2: X[n-k] = conj(X[k])."""
    mirrored = half[:, 1 : (n + 1) // 2].conj().flip(1)
    return torch.cat([half, mirrored], dim=1)


def explicit_filter(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """[rows, n] Re(IDFT(full(prod of DFT(x_m)) * W))): x [M, rows, n] float64, W [1, n//2+1, 2]
    the complex filter as reals; the product of the modalities' spectra when M > 1."""
    n = x.shape[-1]
    forward = torch.from_numpy(dft_matrix(n))  # [n//2+1, n] complex128
    spectrum = None
    for xm in x:
        s = xm.to(torch.complex128) @ forward.T  # [rows, n//2+1]
        spectrum = s if spectrum is None else spectrum * s
    filt = torch.complex(weights[..., 0], weights[..., 1])  # [1, n//2+1]
    inverse = torch.from_numpy(inverse_dft_matrix(n))  # [n, n]
    return (hermitian_full(spectrum * filt, n) @ inverse).real  # the imaginary part is ~0 up to the DC/Nyquist bins


# --- MMRec's SMORE, dense, in float64 ---------------------------------------------------------------
def dense_knn(raw: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(normalised [n, n] adjacency, [n, n] edge mask): build_sim, top-k with the values, 'sym'."""
    x = raw.double().numpy()
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    adj, mask = np.zeros_like(sim), np.zeros(sim.shape, dtype=bool)
    for i in range(len(sim)):
        top = np.argsort(-sim[i])[:k]
        adj[i, top], mask[i, top] = sim[i, top], True
    deg = adj.sum(1)
    with np.errstate(divide="ignore"):
        inv = np.where(np.isinf(deg**-0.5), 0.0, deg**-0.5)
    return inv[:, None] * adj * inv[None, :], mask


def dense_item_graphs(inputs: ModelInputs, ks: dict[str, int]) -> dict[str, np.ndarray]:
    graphs = {m: dense_knn(f, ks[m]) for m, f in raw_features(inputs).items()}
    if len(graphs) == 1:
        ((adj, _),) = graphs.values()
        return {**{m: g[0] for m, g in graphs.items()}, "fusion": adj}
    (img, img_mask), (txt, txt_mask) = graphs["image"], graphs["text"]
    fused = np.where(img_mask & txt_mask, np.maximum(img, txt), np.where(img_mask, img, txt))  # max_pool_fusion
    return {"image": img, "text": txt, "fusion": np.where(img_mask | txt_mask, fused, 0.0)}


def dense_user_item_adj(inputs: ModelInputs) -> np.ndarray:
    n = N_USERS + N_ITEMS
    adj = np.zeros((n, n))
    for u, i in zip(inputs.train_users, inputs.train_items):
        adj[u, N_USERS + i] = adj[N_USERS + i, u] = 1.0
    deg = adj.sum(1)
    with np.errstate(divide="ignore"):
        inv = np.where(np.isinf(deg**-0.5), 0.0, deg**-0.5)
    return inv[:, None] * adj * inv[None, :]


def linear(params, name, x, bias=True):
    out = x @ params[f"{name}.weight"].T
    return out + params[f"{name}.bias"] if bias else out


def dense_forward(params, inputs, n_layers=2, n_ui_layers=2, ks=None, masks=None):
    """MMRec's SMORE.forward(norm_adj, train=True): (users, items, side, content); `masks` are
    the dropout masks of the image, text and fusion preference gates (None: no dropout)."""
    ks = ks or {"image": TINY["image_knn_k"], "text": TINY["text_knn_k"]}
    modalities = list(raw_features(inputs))
    graphs = {v: torch.from_numpy(a) for v, a in dense_item_graphs(inputs, ks).items()}
    norm_adj = torch.from_numpy(dense_user_item_adj(inputs))
    r = norm_adj[:N_USERS, N_USERS:]
    feats = {m: linear(params, f"feat_proj.{m}", params[f"raw_feat.{m}"]) for m in modalities}
    convs = {m: explicit_filter(feats[m][None], params[f"spectral.{m}"]) for m in modalities}
    convs["fusion"] = explicit_filter(torch.stack([feats[m] for m in modalities]), params["spectral.fusion"])
    item_id = params["item_emb"]
    ego = torch.cat([params["user_emb"], item_id])
    layers = [ego]
    for _ in range(n_ui_layers):
        layers.append(norm_adj @ layers[-1])
    content = torch.stack(layers, dim=1).mean(dim=1)
    views = {}
    for v, conv in convs.items():
        h = item_id * torch.sigmoid(linear(params, f"item_gate.{v}", conv))
        for _ in range(n_layers):
            h = graphs[v] @ h
        views[v] = torch.cat([r @ h, h])
    fusion = views["fusion"]

    def query(m):
        hidden = torch.tanh(linear(params, f"query.{m}.0", fusion))
        return torch.softmax(linear(params, f"query.{m}.2", hidden, bias=False), dim=-1)

    def prefer(v):
        weight = torch.sigmoid(linear(params, f"prefer_gate.{v}", content))
        return weight if masks is None else weight * masks[v]

    parts = [prefer(m) * (query(m) * views[m]) for m in modalities] + [prefer("fusion") * fusion]
    side = torch.stack(parts).mean(dim=0)
    out = content + side
    return out[:N_USERS], out[N_USERS:], side, content


def mmrec_info_nce(view1, view2, temperature):
    view1, view2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    pos = torch.exp((view1 * view2).sum(dim=-1) / temperature)
    total = torch.exp(view1 @ view2.T / temperature).sum(dim=1)
    return torch.mean(-torch.log(pos / total))


def mmrec_loss(forward, users, pos, neg, reg_weight, cl_weight, batch_size, temperature=0.2):
    """MMRec SMORE.calculate_loss (bpr_loss + cl_loss x the two InfoNCE terms)."""
    ua, ia, side, content = forward
    u, p, n = ua[users], ia[pos], ia[neg]
    mf_loss = -torch.mean(F.logsigmoid((u * p).sum(1) - (u * n).sum(1)))
    regularizer = (0.5 * (u**2).sum() + 0.5 * (p**2).sum() + 0.5 * (n**2).sum()) / batch_size
    side_u, side_i = side[:N_USERS], side[N_USERS:]
    content_u, content_i = content[:N_USERS], content[N_USERS:]
    cl = mmrec_info_nce(side_i[pos], content_i[pos], temperature) + mmrec_info_nce(
        side_u[users], content_u[users], temperature
    )
    return mf_loss + reg_weight * regularizer + cl_weight * cl


# --- the spectrum ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [8, 7])
@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_spectrum_fusion_matches_an_explicit_dft(dim, features):
    """rfft -> complex filter -> irfft per modality, and the product of the spectra times the
    fusion filter, against the DFT matrix exp(-2 pi i k n / N) in complex128 (even and odd N)."""
    gen = torch.Generator().manual_seed(dim)
    modalities = [m for m, present in zip(("text", "image"), FEATURE_SETS[features]) if present]
    projected = {m: torch.randn(N_ITEMS, dim, generator=gen, dtype=torch.float64) for m in modalities}
    filters = torch.nn.ParameterDict(
        {v: torch.randn(1, dim // 2 + 1, 2, generator=gen, dtype=torch.float64) for v in [*modalities, "fusion"]}
    )
    denoised, fused = spectrum_fusion(projected, filters)

    forward, inverse = dft_matrix(dim), inverse_dft_matrix(dim)
    spectra = {m: x.numpy() @ forward.T for m, x in projected.items()}  # [I, dim//2+1]

    def inverse_half(half):
        full = np.concatenate([half, np.conj(half[:, 1 : (dim + 1) // 2][:, ::-1])], axis=1)  # Hermitian
        return (full @ inverse).real

    def complex_filter(v):
        w = filters[v].detach().numpy()[0]
        return w[:, 0] + 1j * w[:, 1]

    for m in modalities:
        expected = inverse_half(spectra[m] * complex_filter(m))
        np.testing.assert_allclose(denoised[m].detach().numpy(), expected, atol=1e-12)
    expected_fused = inverse_half(np.prod([spectra[m] for m in modalities], axis=0) * complex_filter("fusion"))
    np.testing.assert_allclose(fused.detach().numpy(), expected_fused, atol=1e-12)


def test_one_modality_fusion_filters_that_modalitys_spectrum():
    inputs = tiny_inputs(text=True, image=False)
    model = tiny_model(inputs)
    params = double_params(model)
    with torch.no_grad():
        denoised, fused = model.spectral_views()
    feats = linear(params, "feat_proj.text", params["raw_feat.text"])
    expected = explicit_filter(feats[None], params["spectral.fusion"]).detach().numpy()
    np.testing.assert_allclose(fused.double().numpy(), expected, atol=1e-5)
    assert set(denoised) == {"text"}
    assert not any("image" in name for name, _ in model.named_parameters())
    np.testing.assert_array_equal(model.item_adj_fusion.to_dense().numpy(), model.item_adj_text.to_dense().numpy())


# --- the frozen graphs --------------------------------------------------------------------------
@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_item_graphs_match_dense_reference(features):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs)
    expected = dense_item_graphs(inputs, {"image": 3, "text": 4})
    assert set(expected) == {*model.modalities, "fusion"}
    for view, adj in expected.items():
        ours = model.item_graph(view)
        assert ours[0].layout == torch.sparse_csr
        np.testing.assert_allclose(ours[0].to_dense().double().numpy(), adj, atol=1e-6, err_msg=view)
        np.testing.assert_allclose(ours[1].to_dense().double().numpy(), adj.T, atol=1e-6, err_msg=view)
    assert model.item_adj_fusion._nnz() <= N_ITEMS * (3 + 4)  # the union of the kNN edges


def test_user_item_graphs_match_dense_reference():
    inputs = tiny_inputs()
    model = tiny_model(inputs)
    adj = dense_user_item_adj(inputs)
    np.testing.assert_allclose(model.norm_adj.to_dense().double().numpy(), adj, atol=1e-6)
    np.testing.assert_allclose(model.user_item.to_dense().double().numpy(), adj[:N_USERS, N_USERS:], atol=1e-6)
    np.testing.assert_allclose(model.item_user.to_dense().double().numpy(), adj[N_USERS:, :N_USERS], atol=1e-6)


def test_graphs_are_sparse_buffers_outside_the_checkpoint():
    model = tiny_model(tiny_inputs())
    buffers = dict(model.named_buffers())
    assert buffers and all(b.layout == torch.sparse_csr for b in buffers.values())
    assert not set(buffers) & set(model.state_dict())


def test_knn_k_beyond_the_catalogue_keeps_every_item(caplog):
    with caplog.at_level(logging.WARNING, logger="guider.models.smore"):
        model = tiny_model(tiny_inputs(), image_knn_k=N_ITEMS + 5)
    assert "exceeds" in caplog.text
    assert model.item_adj_image._nnz() == N_ITEMS * N_ITEMS
    assert torch.isfinite(model.item_adj_image.values()).all()  # non-positive degrees guarded


# --- the forward pass and the loss ----------------------------------------------------------------
@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_eval_embeddings_match_dense_reference(features):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, dropout_rate=0.3)  # eval: no dropout
    users, items, side, content = dense_forward(double_params(model), inputs)
    emb = model.eval_embeddings()
    np.testing.assert_allclose(emb.users.double().numpy(), users.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.items.double().numpy(), items.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.extras["side"].double().numpy(), side.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(emb.extras["content"].double().numpy(), content.detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("features", sorted(FEATURE_SETS))
def test_loss_and_gradients_match_mmrec(features):
    inputs = tiny_inputs(*FEATURE_SETS[features])
    model = tiny_model(inputs, reg_weight=0.05, cl_loss=0.3)
    users, pos, neg = batch()
    params = double_params(model)
    expected = mmrec_loss(dense_forward(params, inputs), users, pos, neg, 0.05, 0.3, len(users))
    expected.backward()
    model.train()
    loss = model.loss(users, pos, neg)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        np.testing.assert_allclose(
            param.grad.double().numpy(), params[name].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name
        )


def test_training_loss_with_dropout_matches_mmrec_with_the_same_masks():
    """Dropout acts on the image, text and fusion preference gates, in that order, drawn from
    torch's global RNG; with the same draws the loss is MMRec's."""
    inputs = tiny_inputs()
    model = tiny_model(inputs, dropout_rate=0.4, cl_loss=0.2)
    users, pos, neg = batch()
    torch.manual_seed(7)
    ones = torch.ones(N_USERS + N_ITEMS, TINY["embedding_size"])
    masks = {v: F.dropout(ones, 0.4, training=True).double() for v in ("image", "text", "fusion")}
    expected = mmrec_loss(dense_forward(double_params(model), inputs, masks=masks), users, pos, neg, 1e-4, 0.2, 16)
    model.train()
    torch.manual_seed(7)
    assert model.loss(users, pos, neg).item() == pytest.approx(expected.item(), abs=1e-5)


def test_dropout_only_in_training_and_only_on_the_side_embeddings():
    inputs = tiny_inputs()
    model = tiny_model(inputs, dropout_rate=0.5)
    model.train()
    with torch.no_grad():
        trained = model.propagate()
    evaluated = model.eval_embeddings()
    assert not torch.equal(trained.items, evaluated.items)
    assert torch.equal(trained.extras["content"], evaluated.extras["content"])
    no_dropout = tiny_model(inputs, dropout_rate=0.0)
    no_dropout.train()
    with torch.no_grad():
        trained = no_dropout.propagate()
    assert torch.equal(trained.items, no_dropout.eval_embeddings().items)
    assert not get_class("smore").train_propagate_equals_eval


def test_id_embeddings_are_drawn_as_mmrecs_nn_embedding_then_xavier():
    inputs = tiny_inputs()
    model = tiny_model(inputs, seed=4)
    torch.manual_seed(4)
    d = TINY["embedding_size"]
    users, items = torch.empty(N_USERS, d).normal_(), torch.empty(N_ITEMS, d).normal_()  # nn.Embedding's init
    torch.nn.init.xavier_uniform_(users)
    torch.nn.init.xavier_uniform_(items)
    assert torch.equal(model.user_emb, users) and torch.equal(model.item_emb, items)


# --- the typed config -------------------------------------------------------------------------------
def test_config_defaults_are_mmrecs_yaml():
    assert default_hparams("smore") == pytest.approx(MMREC_SMORE_YAML)
    config = get_class("smore").Config
    assert config.grid == MMREC_SMORE_GRID
    run_config = resolve_run_config("smore")
    assert run_config.train.lr_scheduler == [0.96, 50.0] and run_config.train.lr == 0.001
    for key in config.grid:
        section, _, field = key.partition(".")
        assert hasattr(run_config.model if section == "model" else run_config.train, field)
    assert get_class("smore").display_name == "SMORE"
    assert get_class("smore").uses_features and get_class("smore").needs_negatives


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dropout_rate", "1.0", "model.dropout_rate must be < 1"),
        ("image_knn_k", "0", "model.image_knn_k must be >= 1"),
        ("text_knn_k", "-2", "model.text_knn_k must be >= 1"),
        ("temperature", "0", "model.temperature must be > 0"),
        ("cl_loss", "-0.1", "model.cl_loss must be >= 0"),
        ("n_ui_layers", "-1", "model.n_ui_layers must be >= 0"),
        ("lambda_coeff", "0.9", "unknown config key model.lambda_coeff"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_run_config("smore", sets=(f"model.{key}={value}",))
