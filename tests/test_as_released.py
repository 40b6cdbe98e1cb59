"""`as_released`: each behaviour of the authors' released code, shown by a test."""

import json

import numpy as np
import pytest
import torch
from conftest import make_dataset, run_config

from guider.data import save_dataset
from guider.data.noise import inject_noise
from guider.denoise.as_released import AsReleasedObjective, minmax_clean
from guider.models import build_model
from guider.models.freedom import FREEDOM
from guider.objective import Batch
from guider.train import model_inputs, train


@pytest.fixture(scope="module")
def dataset():
    return inject_noise(make_dataset(n_users=24, n_items=40, per_user=10), 0.2, seed=0)


def build(ds, seed=0, **released):
    inputs = model_inputs(ds, torch.device("cpu"))
    torch.manual_seed(seed)
    model = build_model("lightgcn", inputs)
    config = run_config("lightgcn", "as_released", seed, released=released)
    return AsReleasedObjective(model, inputs, ds, config), inputs


def batch_of(inputs, rows, seed=0):
    rows = torch.as_tensor(rows)
    neg = torch.randint(inputs.n_items, (len(rows),), generator=torch.Generator().manual_seed(seed))
    return Batch(torch.tensor(inputs.train_users)[rows], torch.tensor(inputs.train_items)[rows], neg, rows)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_teacher_is_freedom_with_the_released_values(dataset):
    obj, _ = build(dataset)
    teacher = obj.teacher.model
    assert isinstance(teacher, FREEDOM)
    assert (teacher.dropout, teacher.n_ui_layers, teacher.n_mm_layers) == (0.1, 2, 1)
    # the frozen item graph has knn_k = 20 neighbours per item and per modality
    assert teacher.mm_adj.to_sparse_coo().coalesce().indices()[0].bincount().min() >= 20


def test_clean_mask_is_a_threshold_on_untrained_projection_distances(dataset):
    obj, inputs = build(dataset)
    untrained = snapshot(obj.denoiser)
    obj.on_epoch_start(0, torch.Generator())
    for start in (0, 32, 64):  # a few teacher steps
        obj.step(batch_of(inputs, np.arange(start, start + 32)), 0)
    assert all(torch.equal(untrained[k], v) for k, v in obj.denoiser.state_dict().items())  # never trained
    batch = batch_of(inputs, np.arange(40, 80))
    clean, weights = obj.sample_weights(torch.zeros(40, 64), batch.pos)
    text, image = inputs.text_feat[batch.pos].double(), inputs.image_feat[batch.pos].double()
    w = {k: v.double() for k, v in untrained.items()}
    dist = np.linalg.norm(
        (
            text @ w["text_proj.weight"].T
            + w["text_proj.bias"]
            - image @ w["image_proj.weight"].T
            - w["image_proj.bias"]
        ).numpy(),
        axis=1,
    )
    normalised = (dist - dist.min()) / (dist.max() - dist.min())
    assert clean.tolist() == (normalised < 0.7).tolist()
    assert 0 < int(clean.sum()) < 40  # both kinds occur in the batch
    assert torch.equal(weights[~clean], torch.ones(int((~clean).sum())))  # "noisy" rows keep weight 1


def test_clean_mask_ignores_the_user(dataset):
    obj, inputs = build(dataset)
    items = torch.tensor(inputs.train_items[:30])
    a, _ = obj.sample_weights(torch.randn(30, 64), items)
    b, _ = obj.sample_weights(torch.randn(30, 64), items)
    assert torch.equal(a, b)


def test_hash_layers_get_exactly_zero_gradient(dataset):
    obj, inputs = build(dataset)
    obj.on_epoch_start(0, torch.Generator())
    before = snapshot(obj.denoiser)
    loss, clean = obj.teacher_loss(batch_of(inputs, np.arange(64)))
    assert clean.any()
    obj.teacher.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for name in ("user_hash", "item_hash", "text_proj", "image_proj"):
        for p in getattr(obj.denoiser, name).parameters():
            assert p.grad is not None and torch.count_nonzero(p.grad) == 0, name
    assert obj.teacher.model.user_emb.grad.abs().sum() > 0  # the teacher itself does learn
    obj.teacher.optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in obj.denoiser.state_dict().items())


def test_hash_agreement_is_the_fraction_of_equal_sign_bits(dataset):
    obj, inputs = build(dataset)
    items = torch.tensor(inputs.train_items[:10])
    users = torch.randn(10, 64)
    got = obj.denoiser.hash_agreement(users, inputs.text_feat[items], inputs.image_feat[items])
    d = obj.denoiser
    item = (d.text_proj(inputs.text_feat[items]) + d.image_proj(inputs.image_feat[items])) / 2
    bits_u, bits_i = d.user_hash(users) > 0, d.item_hash(item) > 0
    assert torch.allclose(got, (bits_u == bits_i).float().mean(-1))


def test_second_min_norm_gradient_includes_the_first(dataset):
    obj, inputs = build(dataset)
    obj.on_epoch_start(1, torch.Generator())
    batch = batch_of(inputs, np.arange(32))
    emb = obj.model.propagate()
    loss_student = obj.model.loss(batch.users, batch.pos, batch.neg, emb=emb)
    loss_kd = obj.kd_loss(emb, batch.users)
    g1, g2 = obj.task_gradients(loss_student, loss_kd)
    params = list(obj.model.parameters())
    # what two backward calls without zero_grad leave in .grad
    loss_student.backward(retain_graph=True)
    first = torch.cat([p.grad.reshape(-1) for p in params]).clone()
    loss_kd.backward(retain_graph=True)
    accumulated = torch.cat([p.grad.reshape(-1) for p in params])
    kd_alone = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_kd, params, retain_graph=True)])
    assert torch.allclose(g1, first) and torch.allclose(g2, accumulated)
    assert not torch.allclose(g2, kd_alone)


def test_loss_weights_are_clamped_min_norm_weights(dataset, monkeypatch):
    obj, _ = build(dataset)
    g = torch.ones(5)
    monkeypatch.setattr(obj, "task_gradients", lambda a, b: (g, 2 * g))  # min-norm point: g1 -> 0.999
    assert obj.loss_weights(None, None) == (0.999, pytest.approx(0.001))  # the released solver's end point
    g1, g2 = torch.tensor([1.0, -1e-5], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
    monkeypatch.setattr(obj, "task_gradients", lambda a, b: (g1, g2))  # gamma = 1 / (1 + 1e-5)
    assert obj.loss_weights(None, None) == (pytest.approx(1 / (1 + 1e-5)), 1e-4)  # w_kd floor
    monkeypatch.setattr(obj, "task_gradients", lambda a, b: (2 * g, g))  # gamma 0.001 -> w_s floor 0.5
    assert obj.loss_weights(None, None) == (0.5, pytest.approx(0.999))
    monkeypatch.setattr(obj, "task_gradients", lambda a, b: (torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])))
    assert obj.loss_weights(None, None) == (0.5, 0.5)


def test_distillation_is_full_item_kl_at_temperature_one(dataset):
    obj, inputs = build(dataset)
    obj.on_epoch_start(1, torch.Generator())
    users = torch.tensor([0, 3, 3, 7])
    emb = obj.model.propagate()
    got = obj.kd_loss(emb, users)
    t = obj.teacher.model.scores(obj.teacher.embeddings(), users).double()
    s = obj.model.scores(emb, users).detach().double()
    p_t = torch.softmax(t, -1)
    expected = (p_t * (torch.log_softmax(t, -1) - torch.log_softmax(s, -1))).sum(-1).mean()
    assert float(got) == pytest.approx(float(expected), abs=1e-6)  # float32 vs float64


def test_teacher_and_student_alternate_whole_epochs(dataset):
    obj, inputs = build(dataset)
    batch = batch_of(inputs, np.arange(32))
    obj.on_epoch_start(0, torch.Generator())
    teacher_before = snapshot(obj.teacher.model)
    loss, logs = obj.step(batch, 0)
    assert loss is None and "loss_teacher" in logs  # the trainer takes no student step
    assert any(not torch.equal(teacher_before[k], v) for k, v in obj.teacher.model.state_dict().items())
    obj.on_epoch_start(1, torch.Generator())
    teacher_before = snapshot(obj.teacher.model)
    loss, logs = obj.step(batch, 1)
    assert loss is not None and loss.requires_grad and {"w_student", "w_kd"} <= set(logs)
    assert all(torch.equal(teacher_before[k], v) for k, v in obj.teacher.model.state_dict().items())


def test_minmax_clean_on_constant_distances_marks_all_clean():
    assert minmax_clean(torch.full((4,), 2.0), 0.7).all()
    assert minmax_clean(torch.tensor([0.0, 0.5, 1.0, 0.8]), 0.7).tolist() == [True, True, False, False]


def test_needs_both_modalities():
    ds = make_dataset()
    ds.image_feat = None
    with pytest.raises(ValueError, match="both text and image"):
        build(ds)


def test_training_never_stops_early_and_writes_artefacts(dataset, tmp_path):
    folder = save_dataset(dataset, tmp_path / "d")
    metrics = train(
        folder,
        tmp_path / "r",
        "lightgcn",
        method="as_released",
        device="cpu",
        progress=False,
        epochs=5,
        patience=1,
        sets=("train.batch_size=64", "teacher.model.knn_k=5"),
    )
    assert metrics["epochs_run"] == 5
    for name in ("teacher_metrics.json", "amsc.npz", "denoise.json"):
        assert (tmp_path / "r" / name).exists()
    report = json.loads((tmp_path / "r" / "denoise.json").read_text())
    saved = np.load(tmp_path / "r" / "amsc.npz")
    assert report["false_rows"] == int(saved["false_mask"].sum())
