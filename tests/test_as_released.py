"""`as_released`: each behaviour of the authors' released code, shown by a test."""

import json

import numpy as np
import pytest
import torch
from conftest import make_dataset, run_config

from guider.data import save_dataset
from guider.data.noise import inject_noise
from guider.engine.trainer import model_inputs, train
from guider.methods import Batch
from guider.methods.as_released import AsReleasedObjective, minmax_clean
from guider.models import build_model
from guider.models.freedom import FREEDOM


@pytest.fixture(scope="module")
def dataset():
    return inject_noise(make_dataset(n_users=24, n_items=40, per_user=10), 0.2, seed=0)


def build(ds, seed=0, backbone="lightgcn", batch_size=2048, **released):
    config = run_config(backbone, "as_released", seed, released=released, train={"batch_size": batch_size})
    inputs = model_inputs(ds, torch.device("cpu"))
    torch.manual_seed(seed)
    model = build_model(backbone, inputs, config.model)
    return AsReleasedObjective(model, inputs, ds, config), inputs


def teacher_step(obj, batch):
    loss, _ = obj.teacher_loss(batch)
    obj.teacher.step(loss)


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
    obj.on_epoch_start(0, torch.Generator())  # a full teacher pass
    for start in (0, 32, 64):  # and a few more teacher steps
        teacher_step(obj, batch_of(inputs, np.arange(start, start + 32)))
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
    for name in ("user_hash", "text_hash", "image_hash", "text_proj", "image_proj"):
        for p in getattr(obj.denoiser, name).parameters():
            assert p.grad is not None and torch.count_nonzero(p.grad) == 0, name
    assert obj.teacher.model.user_emb.grad.abs().sum() > 0  # the teacher itself does learn
    obj.teacher.optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in obj.denoiser.state_dict().items())


def test_weight_is_the_mean_of_separate_text_and_image_hash_agreements(dataset):
    obj, inputs = build(dataset)
    items = torch.tensor(inputs.train_items[:10])
    users = torch.randn(10, 64)
    got = obj.denoiser.hash_agreement(users, inputs.text_feat[items], inputs.image_feat[items])
    w = {k: v.double() for k, v in obj.denoiser.state_dict().items()}

    def layer(name, x):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    text, image = inputs.text_feat[items].double(), inputs.image_feat[items].double()
    bits_u = torch.sign(layer("user_hash", users.double()))
    bits_t = torch.sign(layer("text_hash", layer("text_proj", text)))
    bits_v = torch.sign(layer("image_hash", layer("image_proj", image)))
    agree_t = ((bits_u * bits_t).sum(1) / 64 + 1) / 2  # released: (hamming similarity + 1) / 2 per modality
    agree_v = ((bits_u * bits_v).sum(1) / 64 + 1) / 2
    assert torch.allclose(got.double(), (agree_t + agree_v) / 2)
    one_hash = (torch.sign(layer("user_hash", users.double())) == bits_t).double().mean(1)
    assert not torch.allclose(got.double(), one_hash)  # not one hash of the averaged projections


def test_teacher_loss_is_the_weighted_bpr_terms_only(dataset):
    obj, inputs = build(dataset)
    obj.teacher.on_epoch_start(0)
    batch = batch_of(inputs, np.arange(64))
    torch.manual_seed(0)
    loss, clean = obj.teacher_loss(batch)
    emb = obj.teacher.model.propagate()  # FREEDOM's training forward is deterministic given the pruned graph
    u = emb.users[batch.users].double()
    diff = (u * emb.items[batch.pos].double()).sum(1) - (u * emb.items[batch.neg].double()).sum(1)
    _, weights = obj.sample_weights(emb.users[batch.users], batch.pos)
    expected = -(weights.double() * torch.nn.functional.logsigmoid(diff)).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    full = obj.teacher.model.loss(batch.users, batch.pos, batch.neg, emb=emb, weights=weights)
    assert float(full) != pytest.approx(float(loss), rel=1e-4)  # FREEDOM's own loss adds regulariser and modal terms


def test_one_modality_missing_falls_back_to_unweighted_bpr():
    ds = inject_noise(make_dataset(n_users=24, n_items=40, per_user=10), 0.2, seed=0)
    ds.image_feat = None
    obj, inputs = build(ds)
    assert obj.denoiser is None
    batch = batch_of(inputs, np.arange(48))
    obj.teacher.on_epoch_start(0)
    clean, weights = obj.sample_weights(torch.zeros(48, 64), batch.pos)
    assert torch.equal(weights, torch.ones(48)) and not clean.any()
    obj.on_epoch_start(0, torch.Generator())  # a whole teacher pass runs
    loss, _ = obj.step(batch, 0)
    assert torch.isfinite(loss)


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

    def weights(g1, g2):
        monkeypatch.setattr(obj, "task_gradients", lambda a, b: (g1, g2))
        w_student, w_kd = obj.loss_weights(None, None)
        assert w_student.dtype == w_kd.dtype == torch.float32 and w_student.dim() == 0  # device tensors
        return float(w_student), float(w_kd)

    approx = lambda x: pytest.approx(x, rel=1e-6)  # noqa: E731 (float32 weights)
    assert weights(g, 2 * g) == (approx(0.999), approx(0.001))  # min-norm point g1: the released end point
    g1, g2 = torch.tensor([1.0, -1e-5], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert weights(g1, g2) == (approx(1 / (1 + 1e-5)), approx(1e-4))  # gamma = 1 / (1 + 1e-5); w_kd floor
    assert weights(2 * g, g) == (0.5, approx(0.999))  # gamma 0.001 -> w_s floor 0.5
    assert weights(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == (0.5, 0.5)


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


def test_every_epoch_runs_a_full_teacher_pass_then_the_student_pass(dataset):
    obj, inputs = build(dataset, batch_size=32)
    steps = []
    original = obj.teacher.step
    obj.teacher.step = lambda loss: steps.append(1) or original(loss)
    n_rows = len(inputs.train_users)
    for epoch in (0, 1):
        steps.clear()
        teacher_before = snapshot(obj.teacher.model)
        obj.on_epoch_start(epoch, torch.Generator())
        assert len(steps) == -(-n_rows // 32)  # one full pass over the training data
        assert any(not torch.equal(teacher_before[k], v) for k, v in obj.teacher.model.state_dict().items())
        teacher_before = snapshot(obj.teacher.model)
        loss, logs = obj.step(batch_of(inputs, np.arange(32)), epoch)
        assert loss is not None and loss.requires_grad and {"w_student", "w_kd", "loss_teacher"} <= set(logs)
        assert all(torch.equal(teacher_before[k], v) for k, v in obj.teacher.model.state_dict().items())
        assert not obj.teacher.model.training  # the student pass distils from the teacher in eval mode


def test_teacher_has_its_own_loader(dataset):
    obj, inputs = build(dataset, batch_size=32)
    batches = list(obj.teacher_batches(0))
    rows = torch.cat([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(len(inputs.train_users)))  # every train row once
    assert rows.tolist() != list(range(len(inputs.train_users)))  # shuffled
    assert rows.tolist() != torch.cat([b.rows for b in obj.teacher_batches(1)]).tolist()  # reshuffled per epoch
    negs, users = torch.cat([b.neg for b in batches]).numpy(), torch.cat([b.users for b in batches]).numpy()
    assert not obj.teacher_sampler.is_positive(users, negs).any()
    assert set(negs.tolist()) <= set(inputs.train_items.tolist())


def test_negatives_are_drawn_among_items_seen_in_training(tmp_path):
    ds = make_dataset(n_users=24, n_items=40, per_user=10)
    unseen = 39
    ds.inter.loc[ds.inter["itemID"] == unseen, "x_label"] = 2  # item 39 only in test
    from guider.engine.trainer import Trainer

    trainer = Trainer(ds, tmp_path / "r", run_config("lightgcn", "as_released"), torch.device("cpu"), progress=False)
    assert unseen not in trainer.sampler.candidates.tolist()
    draws = trainer.sampler.sample(np.repeat(np.arange(24), 200), np.random.default_rng(0))
    assert unseen not in set(draws.tolist())
    plain = Trainer(ds, tmp_path / "p", run_config("lightgcn"), torch.device("cpu"), progress=False)
    assert plain.sampler.candidates is None  # every other method draws from the whole catalogue


def test_distillation_scores_come_from_the_students_full_graph(dataset):
    obj, inputs = build(dataset, backbone="freedom")  # released FREEDOM student: dropout 0.1 prunes edges
    obj.model.train()
    obj.model.on_epoch_start(0, torch.Generator().manual_seed(0))
    emb = obj.model.propagate()
    full = obj.full_graph_embeddings(emb)
    assert obj.model.training and full.items.requires_grad
    reference = obj.model.eval_embeddings()
    assert torch.allclose(full.items, reference.items) and not torch.allclose(emb.items, reference.items)
    obj.on_epoch_start(0, torch.Generator())
    cached = obj.teacher_scores_emb
    obj.step(batch_of(inputs, np.arange(32)), 0)
    assert obj.teacher_scores_emb is cached  # the teacher's forward once per student pass
    assert torch.equal(cached.items, obj.teacher.embeddings().items)


def test_released_cadence_and_student_settings_unless_overridden():
    from guider.config import resolve_run_config

    freedom = resolve_run_config("freedom", method="as_released")
    assert (freedom.train.epochs, freedom.train.eval_every) == (1000, 5)
    assert (freedom.model.knn_k, freedom.model.dropout, freedom.model.reg_weight) == (20, 0.1, 1e-4)
    bm3 = resolve_run_config("bm3", method="as_released").model
    assert (bm3.cl_weight, bm3.dropout, bm3.reg_weight, bm3.n_layers) == (0.01, 0.1, 0.001, 1)
    assert resolve_run_config("vbpr", method="as_released").model.reg_weight == 1e-4
    mine = resolve_run_config("freedom", method="as_released", sets=["model.knn_k=7", "train.eval_every=1"])
    assert (mine.model.knn_k, mine.train.eval_every, mine.model.dropout) == (7, 1, 0.1)
    plain = resolve_run_config("freedom", method="paper")
    assert (plain.model.knn_k, plain.model.dropout, plain.train.eval_every) == (10, 0.8, 1)


def test_a_nan_loss_ends_training_keeping_the_best_result(dataset, tmp_path, monkeypatch):
    folder = save_dataset(dataset, tmp_path / "d")
    original = AsReleasedObjective.step

    def nan_from_epoch_3(self, batch, epoch):
        loss, logs = original(self, batch, epoch)
        return (loss * float("nan") if epoch >= 3 else loss), logs

    monkeypatch.setattr(AsReleasedObjective, "step", nan_from_epoch_3)
    sets = ("train.batch_size=64", "teacher.model.knn_k=5", "train.eval_every=1")
    metrics = train(
        folder, tmp_path / "r", "lightgcn", method="as_released", device="cpu", progress=False, epochs=8, sets=sets
    )
    assert metrics["stopped_on_nan_at_epoch"] == 3 and metrics["epochs_run"] == 3
    assert metrics["best_epoch"] <= 2
    resumed = train(
        folder,
        tmp_path / "r",
        "lightgcn",
        method="as_released",
        device="cpu",
        progress=False,
        epochs=8,
        sets=sets,
        resume=True,
    )
    assert resumed["epochs_run"] == 3  # a resumed run trains no further
    monkeypatch.setattr(AsReleasedObjective, "stop_on_nan", False)
    with pytest.raises(FloatingPointError, match="nan"):  # every other method: a NaN is an error
        train(
            folder, tmp_path / "e", "lightgcn", method="as_released", device="cpu", progress=False, epochs=8, sets=sets
        )


def test_minmax_clean_on_constant_distances_marks_all_clean():
    assert minmax_clean(torch.full((4,), 2.0), 0.7).all()
    assert minmax_clean(torch.tensor([0.0, 0.5, 1.0, 0.8]), 0.7).tolist() == [True, True, False, False]


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
    assert metrics["released"]["student_released"] is False and "extrapolation" in metrics["released"]["note"]
    assert "test Recall@20" in metrics["released"]["released_choice_rule"]
