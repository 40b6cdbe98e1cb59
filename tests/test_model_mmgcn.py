"""MMGCN: per-modality propagation and fusion against a dense float64 reference, MMRec's loss,
the fixed (untrained) tensors, training determinism, resume, GUIDER, config."""

import numpy as np
import pytest
import torch

import guider.models.mmgcn  # noqa: F401  (registers the backbone)
from guider.config.sections import ConfigError
from guider.models import ModelInputs, build_model, default_hparams, get_class

N_USERS, N_ITEMS, D_TEXT, D_IMAGE, DIM = 5, 6, 4, 7, 8
# (user, item) train pairs: item 5 has no edge; (0, 1) is given twice and is one edge, as in
# MMRec (its inter_matrix(form='coo').astype(np.float32) sums the duplicates)
EDGES = [(0, 0), (0, 1), (0, 1), (1, 1), (1, 2), (2, 0), (2, 3), (3, 4), (3, 2), (4, 4), (4, 0)]


def tiny_inputs(text: bool = True, image: bool = True) -> ModelInputs:
    gen = torch.Generator().manual_seed(0)
    users, items = (np.array(c, dtype=np.int64) for c in zip(*EDGES))
    return ModelInputs(
        n_users=N_USERS,
        n_items=N_ITEMS,
        train_users=users,
        train_items=items,
        text_feat=torch.randn(N_ITEMS, D_TEXT, generator=gen) if text else None,
        image_feat=torch.randn(N_ITEMS, D_IMAGE, generator=gen) if image else None,
    )


def tiny_model(inputs: ModelInputs, seed: int = 0, **config):
    torch.manual_seed(seed)
    return build_model("mmgcn", inputs, {"embedding_size": DIM, **config})


def f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.01 * x)


def mean_messages(x: np.ndarray) -> np.ndarray:
    """PyG MessagePassing(aggr='mean') on MMRec's edge_index: every distinct train pair
    (u, U + i) and its reverse; each target averages its sources' rows (0 when it has none)."""
    edges = sorted(set(EDGES))
    sources = [u for u, i in edges] + [N_USERS + i for u, i in edges]
    targets = [N_USERS + i for u, i in edges] + [u for u, i in edges]
    total, count = np.zeros_like(x), np.zeros(len(x))
    for s, t in zip(sources, targets):
        total[t] += x[s]
        count[t] += 1
    return total / np.maximum(count, 1)[:, None]


def reference_modality(model, m: str) -> np.ndarray:
    """[U+I, d] MMRec's GCN.forward for modality m, dense float64, from the model's parameters."""
    gcn = model.gcn[m]
    feat = f64(getattr(model, f"feat_{m}"))
    if gcn.project is not None:
        feat = feat @ f64(gcn.project.weight).T + f64(gcn.project.bias)
    x = np.concatenate([f64(getattr(model, f"preference_{m}")), feat])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # F.normalize
    ids = f64(model.id_embedding)
    for weight, linear, gate in zip(gcn.conv, gcn.linear, gcn.gate):
        h = lrelu(mean_messages(x @ f64(weight)))
        x_hat = lrelu(x @ f64(linear.weight).T + f64(linear.bias)) + ids
        x = lrelu(np.concatenate([h, x_hat], axis=1) @ f64(gate.weight).T + f64(gate.bias))
    return x


def reference_output(model) -> np.ndarray:
    """[U+I, d] MMRec's MMGCN.forward: the mean of the modalities' GCN outputs."""
    return sum(reference_modality(model, m) for m in model.modalities) / len(model.modalities)


# --- propagation and fusion against the dense reference -------------------------------------


@pytest.mark.parametrize("n_layers", [1, 3])
@pytest.mark.parametrize("features", [(True, True), (True, False), (False, True)])
def test_propagation_and_fusion_match_dense_reference(n_layers, features):
    model = tiny_model(tiny_inputs(*features), n_layers=n_layers)
    emb = model.eval_embeddings()
    got = torch.cat([emb.users, emb.items]).double().numpy()
    np.testing.assert_allclose(got, reference_output(model), atol=1e-5, rtol=1e-5)


def test_each_modality_and_the_mean_fusion():
    model = tiny_model(tiny_inputs())
    for m in ("text", "image"):
        with torch.no_grad():
            np.testing.assert_allclose(f64(model.modality_output(m)), reference_modality(model, m), atol=1e-5)
    emb = model.eval_embeddings()
    with torch.no_grad():
        fused = (model.modality_output("text") + model.modality_output("image")) / 2
    assert torch.allclose(torch.cat([emb.users, emb.items]), fused, atol=1e-6)


def test_layer_widths_and_initialisation_follow_mmrec():
    model = tiny_model(tiny_inputs(), n_layers=3)
    image, text = model.gcn["image"], model.gcn["text"]
    assert image.project.out_features == 256 and text.project is None  # dim_latent=256 for images only
    assert [tuple(w.shape) for w in image.conv] == [(256, 256), (DIM, DIM), (DIM, DIM)]
    assert [tuple(w.shape) for w in text.conv] == [(D_TEXT, D_TEXT), (DIM, DIM), (DIM, DIM)]
    assert [g.in_features for g in image.gate] == [256 + DIM, 2 * DIM, 2 * DIM]  # concatenation ('False' is truthy)
    assert model.preference_image.shape == (N_USERS, 256) and model.preference_text.shape == (N_USERS, D_TEXT)
    assert model.id_embedding.shape == (N_USERS + N_ITEMS, DIM)


def test_an_item_without_edges_receives_no_message():
    model = tiny_model(tiny_inputs())
    x = torch.randn(N_USERS + N_ITEMS, 3, dtype=torch.float32)
    got = model.mean_neighbours(x)
    assert torch.equal(got[N_USERS + 5], torch.zeros(3))
    np.testing.assert_allclose(f64(got), mean_messages(f64(x)), atol=1e-6)


# --- the loss against MMRec's calculate_loss -------------------------------------------------


def mmrec_calculate_loss(model, users, pos, neg) -> float:
    """MMRec's MMGCN.calculate_loss, float64, on the dense reference forward."""
    out = torch.from_numpy(reference_output(model))
    ids = model.id_embedding.double()
    user_tensor = users.repeat_interleave(2)
    item_tensor = torch.stack((pos + N_USERS, neg + N_USERS)).t().contiguous().view(-1)
    score = torch.sum(out[user_tensor] * out[item_tensor], dim=1).view(-1, 2)
    loss = -torch.mean(torch.log(torch.sigmoid(score @ torch.tensor([[1.0], [-1.0]], dtype=torch.float64))))
    reg = (ids[user_tensor] ** 2 + ids[item_tensor] ** 2).mean()
    if "image" in model.modalities:
        reg = reg + (model.preference_image.double() ** 2).mean()
    return float(loss + model.reg_weight * reg)


BATCH = (torch.tensor([0, 1, 2, 3, 4, 0, 2]), torch.tensor([1, 2, 3, 4, 0, 0, 0]), torch.tensor([5, 0, 1, 5, 3, 2, 4]))


@pytest.mark.parametrize("features", [(True, True), (True, False), (False, True)])
def test_loss_equals_mmrec_calculate_loss(features):
    model = tiny_model(tiny_inputs(*features), reg_weight=0.5)
    emb = model.propagate()
    loss = model.sample_losses(emb, *BATCH).mean() + model.regularization(emb, *BATCH)
    assert loss.item() == pytest.approx(mmrec_calculate_loss(model, *BATCH), rel=1e-5)
    assert model.loss(*BATCH).item() == pytest.approx(loss.item(), rel=1e-6)


def test_reg_splits_into_per_triple_ids_and_image_preference():
    model = tiny_model(tiny_inputs(), reg_weight=0.5)
    emb = model.eval_embeddings()
    users, pos, neg = BATCH
    plain = tiny_model(tiny_inputs(), reg_weight=0.0).sample_losses(emb, users, pos, neg)
    ids = model.id_embedding.double()
    expected = (2 * ids[users].square().sum(1) + ids[pos + N_USERS].square().sum(1)) + ids[neg + N_USERS].square().sum(
        1
    )
    got = model.sample_losses(emb, users, pos, neg) - plain
    assert torch.allclose(got.double(), 0.5 * expected / (2 * DIM), atol=1e-7)
    assert float(model.regularization(emb, users, pos, neg)) == pytest.approx(
        0.5 * float(model.preference_image.square().mean())
    )
    text_only = tiny_model(tiny_inputs(image=False), reg_weight=0.5)
    assert float(text_only.regularization(emb, users, pos, neg)) == 0.0  # MMRec: v_gcn.preference only


# --- the fixed tensors (MMRec's untrained id_embedding and preferences) ----------------------


def test_fixed_tensors_are_untrained_and_follow_the_checkpointed_seed():
    a, b = tiny_model(tiny_inputs(), seed=0), tiny_model(tiny_inputs(), seed=1)
    names = {n for n, _ in a.named_parameters()}
    assert not any("id_embedding" in n or "preference" in n for n in names)
    state = a.state_dict()
    assert "fixed_seed" in state and not any("id_embedding" in k or "preference" in k or "x0" in k for k in state)
    assert not torch.equal(a.id_embedding, b.id_embedding)
    b.load_state_dict(state)
    for name in ("id_embedding", "preference_text", "preference_image", "x0_mean_text"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    ea, eb = a.eval_embeddings(), b.eval_embeddings()
    assert torch.equal(ea.users, eb.users) and torch.equal(ea.items, eb.items)


def test_fixed_tensors_have_xavier_normal_scale():
    inputs = tiny_inputs()
    inputs.n_users, inputs.n_items = 400, 600
    inputs.train_users, inputs.train_items = np.arange(400) % 400, np.arange(400) % 600
    inputs.text_feat, inputs.image_feat = torch.randn(600, D_TEXT), None
    model = tiny_model(inputs, embedding_size=64)
    assert float(model.id_embedding.std()) == pytest.approx((2 / (1000 + 64)) ** 0.5, rel=0.05)
    assert float(model.preference_text.std()) == pytest.approx((2 / (400 + D_TEXT)) ** 0.5, rel=0.05)


# --- config ---------------------------------------------------------------------------------

# MMRec src/configs/model/MMGCN.yaml, written out: embedding_size 64, reg_weight grid first
# value 0; n_layers 3 is what MMRec's GCN.forward computes (the yaml's n_layers: 2 is unused)
MMREC_MMGCN = {"embedding_size": 64, "n_layers": 3, "reg_weight": 0.0}


def test_config_defaults_grid_and_errors():
    assert default_hparams("mmgcn") == MMREC_MMGCN
    cls = get_class("mmgcn")
    assert cls.display_name == "MMGCN" and cls.uses_features and cls.needs_negatives
    assert cls.train_propagate_equals_eval
    assert cls.Config.grid == {
        "model.reg_weight": (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1),
        "train.lr": (1e-4, 5e-4, 1e-3, 5e-3, 1e-2),
    }
    for key, value in (("reg_weight", -1.0), ("n_layers", 0), ("embedding_size", 0)):
        with pytest.raises(ConfigError, match=f"model.{key}"):
            build_model("mmgcn", tiny_inputs(), {key: value})
