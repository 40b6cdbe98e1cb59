"""T-CE and R-CE baselines (Wang et al., WSDM 2021) on any backbone."""

import numpy as np
import pytest
import torch
from conftest import make_dataset, run_config

from guider.data import save_dataset
from guider.data.noise import inject_noise
from guider.engine.trainer import model_inputs, train
from guider.methods import Batch
from guider.methods.rce import ReweightedLoss
from guider.methods.tce import TruncatedLoss
from guider.models import available, build_model, get_class


def cfg(method, sections):
    return run_config("bpr", method, **sections)


@pytest.fixture(scope="module")
def setup():
    ds = make_dataset()
    inputs = model_inputs(ds, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("bpr", inputs)
    rows = torch.arange(20)
    neg = torch.randint(inputs.n_items, (20,), generator=torch.Generator().manual_seed(0))
    batch = Batch(torch.tensor(inputs.train_users)[rows], torch.tensor(inputs.train_items)[rows], neg, rows)
    return ds, inputs, model, batch


def test_tce_drop_rate_ramps_linearly_per_step_to_the_maximum(setup):
    ds, inputs, model, _ = setup
    n_train = len(inputs.train_users)
    obj = TruncatedLoss(
        model, inputs, ds, cfg("tce", {"train": {"batch_size": 50}, "tce": {"max_rate": 0.3, "ramp_epochs": 2}})
    )
    steps = int(np.ceil(n_train / 50))
    assert obj.steps_per_epoch == steps
    rates = []
    for epoch in range(3):
        obj.on_epoch_start(epoch, torch.Generator())
        for _ in range(steps):
            rates.append(obj.drop_rate())
            obj.batch_index += 1
    expected = [0.3 * min(1.0, s / (2 * steps)) for s in range(3 * steps)]
    assert rates == pytest.approx(expected)


def test_tce_keeps_the_smallest_losses_and_drops_the_largest(setup):
    ds, inputs, model, batch = setup
    obj = TruncatedLoss(model, inputs, ds, cfg("tce", {"tce": {"max_rate": 0.25, "ramp_epochs": 0}}))
    obj.on_epoch_start(0, torch.Generator())
    loss, logs = obj.step(batch, 0)
    assert logs["drop_rate"] == 0.25
    emb = model.propagate()
    per = model.sample_losses(emb, batch.users, batch.pos, batch.neg).detach().numpy()
    keep = np.sort(np.argsort(per)[:15])  # int(0.75 * 20)
    u, i, j = batch.users[keep], batch.pos[keep], batch.neg[keep]
    expected = per[keep].mean() + float(model.regularization(emb, u, i, j))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    dropped = np.argsort(per)[15:]
    assert per[dropped].min() >= per[keep].max()


def test_tce_at_rate_zero_is_plain_training(setup):
    ds, inputs, model, batch = setup
    obj = TruncatedLoss(model, inputs, ds, cfg("tce", {"tce": {"max_rate": 0.2, "ramp_epochs": 5}}))
    obj.on_epoch_start(0, torch.Generator())
    loss, _ = obj.step(batch, 0)
    assert float(loss) == pytest.approx(float(model.loss(batch.users, batch.pos, batch.neg)), rel=1e-6)


def test_rce_weights_are_detached_pairwise_probabilities_to_beta(setup):
    ds, inputs, model, batch = setup
    obj = ReweightedLoss(model, inputs, ds, cfg("rce", {"rce": {"beta": 0.5}}))
    emb = model.propagate()
    weights = obj.weights(emb, batch)
    assert not weights.requires_grad
    u = emb.users[batch.users].detach().double()
    diff = (u * emb.items[batch.pos].detach().double()).sum(1) - (u * emb.items[batch.neg].detach().double()).sum(1)
    assert torch.allclose(weights.double(), torch.sigmoid(diff) ** 0.5, atol=1e-6)
    loss, _ = obj.step(batch, 0)
    per = model.sample_losses(emb, batch.users, batch.pos, batch.neg).detach()
    expected = (weights * per).mean() + model.regularization(emb, batch.users, batch.pos, batch.neg)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_rce_with_beta_zero_is_plain_training(setup):
    ds, inputs, model, batch = setup
    loss, _ = ReweightedLoss(model, inputs, ds, cfg("rce", {"rce": {"beta": 0.0}})).step(batch, 0)
    assert float(loss) == pytest.approx(float(model.loss(batch.users, batch.pos, batch.neg)), rel=1e-6)


@pytest.mark.parametrize(
    "bad", [{"tce": {"max_rate": 1.0}}, {"tce": {"ramp_epochs": -1}}, {"rce": {"beta": -0.1}}, {"tce": {"rate": 0.1}}]
)
def test_bad_settings_are_rejected(bad):
    with pytest.raises(ValueError, match=r"(tce|rce)\.\w+"):
        cfg("tce" if "tce" in bad else "rce", bad)


@pytest.fixture(scope="module")
def noisy_folder(tmp_path_factory):
    return save_dataset(inject_noise(make_dataset(), 0.2, seed=0), tmp_path_factory.mktemp("d") / "noisy")


@pytest.mark.parametrize("backbone", [b for b in available() if get_class(b).trainable])
@pytest.mark.parametrize("method", ["tce", "rce"])
def test_trains_on_every_backbone(noisy_folder, tmp_path, backbone, method):
    metrics = train(
        noisy_folder,
        tmp_path / "r",
        backbone,
        method=method,
        device="cpu",
        progress=False,
        epochs=2,
        sets=("train.batch_size=64",),
    )
    assert metrics["method"] == method and metrics["epochs_run"] == 2
    assert 0.0 <= metrics["test"]["recall@20"] <= 1.0


def first_batch(tmp_path, backbone, method, monkeypatch) -> Batch:
    """The first batch an epoch of `method` on `backbone` hands to its objective."""
    from guider.engine.trainer import Trainer

    ds = make_dataset(n_users=12, n_items=15, per_user=6)
    trainer = Trainer(ds, tmp_path / method, run_config(backbone, method), torch.device("cpu"), progress=False)
    seen = []
    real_step = type(trainer.method).step
    monkeypatch.setattr(
        type(trainer.method),
        "step",
        lambda self, batch, epoch: (seen.append(batch), real_step(self, batch, epoch))[1],
    )
    trainer.run_epoch(0)
    return seen[0]


def test_rce_reads_sampled_negatives_even_on_a_backbone_without_them(tmp_path, monkeypatch):
    """BM3 samples no negatives (Batch.neg is None, so a reader fails loudly); R-CE weighs each
    triple by sigmoid(y_ui - y_uj) and declares that it needs them: its batches carry sampled
    negatives, never a zero fill (which weighed every triple against item 0)."""
    assert first_batch(tmp_path, "bm3", "none", monkeypatch).neg is None
    assert first_batch(tmp_path, "bm3", "tce", monkeypatch).neg is None  # T-CE ranks BM3's own per-pair loss
    rce = first_batch(tmp_path, "bm3", "rce", monkeypatch)
    assert rce.neg is not None and len(set(rce.neg.tolist())) > 1
    users, negs = rce.users.tolist(), rce.neg.tolist()
    train = set(zip(*make_dataset(n_users=12, n_items=15, per_user=6).split(0)))
    assert not any((u, j) in train for u, j in zip(users, negs))  # true negatives of each user
