"""DBPR: the teacher's BPR with AMSC's false rows down-weighted."""

import numpy as np
import pytest
import torch
from conftest import make_dataset

from guider.engine.trainer import model_inputs
from guider.methods.dbpr import dbpr_loss, dbpr_weights
from guider.models import build_model


@pytest.fixture
def teacher_and_batch():
    inputs = model_inputs(make_dataset(), torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("lightgcn", inputs, {"n_layers": 2})
    gen = torch.Generator().manual_seed(1)
    users = torch.as_tensor(inputs.train_users[:16])
    pos = torch.as_tensor(inputs.train_items[:16])
    neg = torch.randint(inputs.n_items, (16,), generator=gen)
    return model, users, pos, neg


def test_dbpr_reduces_to_bpr_when_every_interaction_is_true(teacher_and_batch):
    model, users, pos, neg = teacher_and_batch
    weights = dbpr_weights(torch.zeros(16, dtype=torch.bool), torch.rand(16), false_weight=0.5)
    assert torch.equal(weights, torch.ones(16))
    emb = model.propagate()
    assert torch.equal(dbpr_loss(model, users, pos, neg, weights, emb=emb), model.loss(users, pos, neg, emb=emb))


def test_weights_follow_the_false_mask_and_confidence():
    mask = torch.tensor([False, True, True, False])
    conf = torch.tensor([0.9, 0.2, 0.6, 0.1])
    assert dbpr_weights(mask, conf, 0.5).tolist() == pytest.approx([1.0, 0.1, 0.3, 1.0])
    assert dbpr_weights(mask, conf, 0.0).tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="false_weight"):
        dbpr_weights(mask, conf, -1.0)


def test_dbpr_equals_hand_computed_formula(teacher_and_batch):
    """-mean_b m_b log(1e-10 + sigmoid(y_ui - y_uj)) + reg_weight * EmbLoss(ego embeddings)."""
    model, users, pos, neg = teacher_and_batch
    mask = torch.arange(16) % 3 == 0
    weights = dbpr_weights(mask, torch.linspace(0.1, 0.9, 16), 0.5)
    emb = model.propagate()
    got = dbpr_loss(model, users, pos, neg, weights, emb=emb)
    u, i, j = (x.detach().double().numpy() for x in (emb.users[users], emb.items[pos], emb.items[neg]))
    diff = (u * i).sum(1) - (u * j).sum(1)
    main = -np.mean(weights.double().numpy() * np.log(1e-10 + 1 / (1 + np.exp(-diff))))
    ego = [t.detach().double().numpy() for t in (model.user_emb[users], model.item_emb[pos], model.item_emb[neg])]
    reg = model.reg_weight * sum(np.linalg.norm(e) for e in ego) / 16
    assert float(got) == pytest.approx(main + reg, rel=1e-6)


def test_dropped_rows_do_not_pull_their_positive(teacher_and_batch):
    """false_weight 0: a positive that appears only in dropped rows gets no BPR gradient."""
    model, users, pos, neg = teacher_and_batch
    weights = torch.ones(16)
    weights[0] = 0.0
    only_here = (pos == pos[0]).sum() == 1 and not (neg == pos[0]).any()
    assert only_here
    model.reg_weight = 0.0
    emb = model.propagate()
    loss = dbpr_loss(model, users, pos, neg, weights, emb=emb)
    grad_items = torch.autograd.grad(loss, emb.items)[0]
    assert torch.equal(grad_items[pos[0]], torch.zeros_like(grad_items[pos[0]]))
