"""The GUIDER objective and its variants, on tiny in-memory data and through the trainer."""

import json

import numpy as np
import pytest
import torch
from conftest import make_dataset

from guider.config import resolve_run_config
from guider.config.sections import deep_merge
from guider.data import save_dataset
from guider.data.noise import inject_noise
from guider.engine.trainer import model_inputs, train
from guider.methods import Batch, method_class
from guider.methods import guider as guider_module
from guider.methods.distill import kl_distillation
from guider.methods.guider import unique_first
from guider.methods.mgda import flat_gradient, min_norm_two
from guider.models import build_model

FAST = {"amsc": {"warmup_epochs": 1, "every": 1, "knn_k": 3}, "kd": {"candidates": 12, "teacher_top": 4, "users": 8}}


@pytest.fixture(scope="module")
def noisy():
    return inject_noise(make_dataset(n_users=24, n_items=30, per_user=10), 0.25, seed=0)


def build(ds, variant="paper", backbone="lightgcn", seed=0, **sections):
    inputs = model_inputs(ds, torch.device("cpu"))
    torch.manual_seed(seed)
    model = build_model(backbone, inputs)
    config = resolve_run_config(backbone, method=variant, seed=seed, overrides=deep_merge(FAST, sections))
    return method_class(variant)(model, inputs, ds, config), inputs


def batch_of(inputs, rows, seed=0):
    rows = torch.as_tensor(rows)
    neg = torch.randint(inputs.n_items, (len(rows),), generator=torch.Generator().manual_seed(seed))
    return Batch(torch.tensor(inputs.train_users)[rows], torch.tensor(inputs.train_items)[rows], neg, rows)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_unique_first_finds_first_occurrences():
    users, first = unique_first(torch.tensor([5, 3, 5, 7, 3]))
    assert users.tolist() == [3, 5, 7] and first.tolist() == [1, 0, 3]


def test_step_trains_teacher_then_returns_student_loss_with_kd(noisy):
    obj, inputs = build(noisy)
    obj.on_epoch_start(0, torch.Generator())
    teacher_before = params(obj.teacher.model)
    loss, logs = obj.step(batch_of(inputs, np.arange(16)), 0)
    assert {"loss_teacher", "loss_backbone", "loss_kd"} <= set(logs)
    assert any(not torch.equal(a, b) for a, b in zip(teacher_before, obj.teacher.model.parameters()))
    assert loss.item() == pytest.approx(float(logs["loss_backbone"]) + 0.1 * float(logs["loss_kd"]), rel=1e-5)
    teacher_grads = [None if p.grad is None else p.grad.clone() for p in obj.teacher.model.parameters()]
    loss.backward()  # the student's loss must not reach the teacher
    assert all(
        (a is None and p.grad is None) or torch.equal(a, p.grad)
        for a, p in zip(teacher_grads, obj.teacher.model.parameters())
    )
    assert all(p.grad is not None for p in obj.model.parameters())


def test_kd_uses_the_updated_teacher(noisy, monkeypatch):
    """The KD scores come from the teacher after this batch's step, not before."""
    obj, inputs = build(noisy)
    obj.on_epoch_start(0, torch.Generator())
    seen = []
    real = obj.teacher.model.scores
    monkeypatch.setattr(obj.teacher.model, "scores", lambda emb, *a: seen.append(emb) or real(emb, *a))
    obj.step(batch_of(inputs, np.arange(16)), 0)
    updated = obj.teacher.embeddings()  # an eval forward with the post-step parameters
    assert torch.allclose(seen[-1].items, updated.items, atol=1e-6)
    assert torch.allclose(seen[-1].users, updated.users, atol=1e-6)
    assert not seen[-1].items.requires_grad


def run_steps(obj, inputs, n_steps):
    optimizer = torch.optim.Adam(obj.model.parameters(), lr=0.01)
    obj.on_epoch_start(0, torch.Generator())
    for step in range(n_steps):
        loss, _ = obj.step(batch_of(inputs, np.arange(16 * step, 16 * step + 16) % len(inputs.train_users), step), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_reused_post_step_forward_trains_exactly_like_a_separate_refresh(noisy, monkeypatch):
    """The teacher's post-step forward is reused by its next step: one teacher propagate per
    batch, and the same student and teacher as with a separate eval forward for KD."""
    reused, inputs = build(noisy)
    calls = []
    real = reused.teacher.model.propagate
    monkeypatch.setattr(reused.teacher.model, "propagate", lambda: calls.append(1) or real())
    run_steps(reused, inputs, 4)
    assert len(calls) == 1 + 4  # the first step's own forward, then one per step
    separate, _ = build(noisy)
    separate.teacher.model.train_propagate_equals_eval = False  # forces the eval-forward path
    run_steps(separate, inputs, 4)
    for a, b in zip(
        params(reused.model) + params(reused.teacher.model), params(separate.model) + params(separate.teacher.model)
    ):
        assert torch.allclose(a, b, atol=1e-6)


def test_stale_teacher_option_reuses_the_training_forward(noisy, monkeypatch):
    """kd.refresh_teacher=false: KD sees the teacher's pre-step embeddings, no extra forward."""
    obj, inputs = build(noisy, kd={"refresh_teacher": False})
    obj.on_epoch_start(0, torch.Generator())
    before = obj.teacher.embeddings()
    monkeypatch.setattr(obj.teacher, "embeddings", lambda: pytest.fail("an extra teacher forward ran"))
    obj.teacher_step(batch_of(inputs, np.arange(16)))
    stale = obj.teacher_embeddings_for_kd()
    assert torch.allclose(stale.items, before.items) and torch.allclose(stale.users, before.users)
    assert not stale.items.requires_grad
    obj.step(batch_of(inputs, np.arange(16, 32)), 0)


def test_kl_variant_is_kl_on_the_same_candidates(noisy, monkeypatch):
    obj, inputs = build(noisy, "kl_kd")
    assert obj.kd.loss == "kl"
    obj.on_epoch_start(0, torch.Generator())
    captured = {}
    real = guider_module.kl_distillation
    monkeypatch.setattr(
        guider_module, "kl_distillation", lambda s, t, temp: captured.update(s=s.detach(), t=t) or real(s, t, temp)
    )
    _, logs = obj.step(batch_of(inputs, np.arange(16)), 0)
    assert logs["loss_kd"] == pytest.approx(float(kl_distillation(captured["s"], captured["t"])), rel=1e-6)
    assert captured["s"].shape == (len(torch.unique(torch.as_tensor(inputs.train_users[:16]))), 12)


def test_variants_differ_only_in_teacher_signal(noisy):
    """no_dbpr and no_amsc teachers see plain BPR (identical steps); paper's teacher, with
    false rows in the batch, takes a different step."""
    teachers = {}
    for variant in ("paper", "no_dbpr", "no_amsc"):
        obj, inputs = build(noisy, variant)
        obj.on_epoch_start(0, torch.Generator())
        if variant != "no_amsc":
            assert obj.calibration.false_mask.any()
        rows = np.arange(len(inputs.train_users))
        obj.teacher_step(batch_of(inputs, rows))
        teachers[variant] = params(obj.teacher.model)
    assert all(torch.equal(a, b) for a, b in zip(teachers["no_dbpr"], teachers["no_amsc"]))
    assert any(not torch.equal(a, b) for a, b in zip(teachers["paper"], teachers["no_dbpr"]))


def test_no_amsc_never_calibrates(noisy):
    obj, _ = build(noisy, "no_amsc")
    obj.on_epoch_start(0, torch.Generator())
    assert obj.amsc is None and not obj.calibration.false_mask.any()


def test_recalibration_schedule_and_teacher_similarity(noisy, monkeypatch):
    obj, _ = build(noisy, amsc={"warmup_epochs": 2, "every": 2})
    calls = []
    real = obj.amsc.calibrate
    monkeypatch.setattr(obj.amsc, "calibrate", lambda rec=None: calls.append(rec is not None) or real(rec))
    for epoch in range(5):
        obj.on_epoch_start(epoch, torch.Generator())
    assert calls == [False, True, True]  # epochs 0 (warm-up), 2 and 4 (teacher S_rec)
    assert obj.calibrated_epoch == 4


def test_mgda_weights_are_the_min_norm_point(noisy):
    obj, inputs = build(noisy, kd={"balance": "mgda"})
    obj.on_epoch_start(0, torch.Generator())
    loss, logs = obj.step(batch_of(inputs, np.arange(16)), 0)
    gamma = logs["kd_gamma"]
    assert 0.0 <= gamma <= 1.0
    g1, g2 = torch.randn(50, generator=torch.Generator().manual_seed(0)), torch.randn(50)
    best = min_norm_two(g1, g2)
    grid = np.linspace(0, 1, 2001)
    norms = [float(torch.linalg.vector_norm(w * g1 + (1 - w) * g2)) for w in grid]
    assert float(best) == pytest.approx(grid[int(np.argmin(norms))], abs=1e-3)
    assert float(min_norm_two(g1, 3 * g1)) == 1.0 and float(min_norm_two(3 * g1, g1)) == 0.0
    assert float(min_norm_two(g1, 3 * g1, released_bounds=True)) == 0.999
    assert float(min_norm_two(3 * g1, g1, released_bounds=True)) == 0.001
    d11, d12, d22 = (float(x @ y) for x, y in ((g1, g1), (g1, g2), (g2, g2)))  # the Python-float formula
    assert float(best) == (d22 - d12) / (d11 + d22 - 2.0 * d12)


def test_flat_gradient_does_not_touch_grad_buffers():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    g = flat_gradient((w**2).sum(), [w])
    assert g.tolist() == [2.0, 4.0] and w.grad is None


def test_state_round_trip_restores_teacher_and_calibration(noisy):
    a, inputs = build(noisy)
    a.on_epoch_start(0, torch.Generator())
    a.step(batch_of(inputs, np.arange(16)), 0)
    b, _ = build(noisy, seed=1)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(a.teacher.model.parameters(), b.teacher.model.parameters()))
    assert torch.equal(a.calibration.false_mask, b.calibration.false_mask) and b.calibrated_epoch == 0
    batch = batch_of(inputs, np.arange(16, 32))
    assert a.teacher_step(batch) == pytest.approx(b.teacher_step(batch))  # the optimiser state came along


def test_bad_config_values_are_rejected(noisy):
    with pytest.raises(ValueError, match="kd.loss"):
        build(noisy, kd={"loss": "wasserstein"})
    with pytest.raises(ValueError, match="unknown config key"):
        build(noisy, kd={"wieght": 0.2})
    with pytest.raises(ValueError, match="AMSC needs text or image"):
        build(make_dataset(features=False))


def test_variant_defaults_and_set_overrides():
    cfg = resolve_run_config("lightgcn", method="no_kd", sets=["amsc.tau=1.5", "kd.eps=0.1"])
    assert cfg.section("kd").weight == 0.0 and cfg.section("amsc").tau == 1.5 and cfg.section("kd").eps == 0.1
    assert resolve_run_config("lightgcn", method="kl_kd").section("kd").loss == "kl"
    with pytest.raises(ValueError, match="unknown config key amsc.tua"):
        resolve_run_config("lightgcn", method="paper", sets=["amsc.tua=1"])


def test_teacher_is_configured_like_any_model():
    """teacher.model.* is checked against the teacher backbone's own Config."""
    cfg = resolve_run_config("vbpr", method="paper", sets=["teacher.model.n_layers=3"])
    teacher = cfg.section("teacher")
    assert (teacher.backbone, teacher.model.n_layers, teacher.model.embedding_size) == ("lightgcn", 3, 64)
    assert resolve_run_config("vbpr", method="paper").section("teacher").model.n_layers == 2  # paper: 2 layers
    mf = resolve_run_config("vbpr", method="paper", sets=["teacher.backbone=bpr"]).section("teacher").model
    assert mf.to_dict() == {"embedding_size": 64, "reg_weight": 1e-4}
    with pytest.raises(ValueError, match="unknown config key teacher.model.knn_k; known: embedding_size, n_layers"):
        resolve_run_config("vbpr", method="paper", sets=["teacher.model.knn_k=5"])
    with pytest.raises(ValueError, match="unknown config key teacher.model.n_layers; known: embedding_size, reg"):
        resolve_run_config("vbpr", method="paper", sets=["teacher.backbone=bpr", "teacher.model.n_layers=2"])
    with pytest.raises(ValueError, match="teacher.backbone: unknown backbone 'lgcn'"):
        resolve_run_config("vbpr", method="paper", sets=["teacher.backbone=lgcn"])
    with pytest.raises(ValueError, match="teacher.backbone 'pop' is not trainable"):
        resolve_run_config("vbpr", method="paper", sets=["teacher.backbone=pop"])
    released = resolve_run_config("vbpr", method="as_released").section("teacher")
    assert (released.backbone, released.model.knn_k, released.model.dropout) == ("freedom", 20, 0.1)


@pytest.fixture(scope="module")
def noisy_folder(tmp_path_factory, noisy):
    return save_dataset(noisy, tmp_path_factory.mktemp("data") / "noisy")


def run(folder, out, backbone="lightgcn", **kw):
    sets = ("train.batch_size=64",) + tuple(kw.pop("sets", ()))
    return train(folder, out, backbone, device="cpu", progress=False, epochs=3, sets=sets, **kw)


@pytest.mark.parametrize("backbone", ["lightgcn", "freedom"])
def test_no_kd_leaves_the_student_identical_to_plain_training(noisy_folder, tmp_path, backbone):
    plain = run(noisy_folder, tmp_path / "plain", backbone, seed=5)
    no_kd = run(
        noisy_folder,
        tmp_path / "no_kd",
        backbone,
        seed=5,
        method="no_kd",
        sets=("amsc.knn_k=3", "amsc.warmup_epochs=1", "amsc.every=1"),
    )
    assert plain["test"] == no_kd["test"] and plain["valid"] == no_kd["valid"]
    a = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "no_kd" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_paper_run_writes_teacher_amsc_and_detection_artefacts(noisy_folder, noisy, tmp_path):
    metrics = run(
        noisy_folder,
        tmp_path / "p",
        method="paper",
        sets=("amsc.knn_k=3", "amsc.warmup_epochs=1", "amsc.every=1", "kd.candidates=12", "kd.teacher_top=4"),
    )
    out = tmp_path / "p"
    teacher = json.loads((out / "teacher_metrics.json").read_text())
    assert set(teacher) == {"backbone", "valid", "test"} and "recall@20" in teacher["test"]
    assert metrics["teacher"]["test"] == teacher["test"]
    saved = np.load(out / "amsc.npz")
    labels = noisy.train_noise_labels
    assert saved["false_mask"].shape == labels.shape and saved["weights"].shape == labels.shape
    assert np.array_equal(saved["items"], noisy.split(0)[1])
    report = json.loads((out / "denoise.json").read_text())
    predicted = saved["false_mask"]
    tp = int((predicted & labels).sum())
    assert report["injected_noise"]["true_positives"] == tp
    assert report["injected_noise"]["precision"] == pytest.approx(tp / max(1, predicted.sum()))
    assert report["misaligned_items"] is None  # the tiny dataset records no misaligned items
    assert metrics["detection"]["false_rows"] == int(predicted.sum())
    assert metrics["method"] == "paper"  # the trainer's own field is not overwritten


def test_amsc_diagnostics_script_scores_the_run(noisy_folder, noisy, tmp_path, capsys):
    """scripts/amsc_diagnostics.py: its content-only line is a fresh warm-up calibration."""
    import importlib.util
    from pathlib import Path

    from guider.methods.amsc import AMSC, AMSCConfig
    from guider.methods.detection import precision_recall_f1

    run(
        noisy_folder,
        tmp_path / "p",
        method="paper",
        sets=("amsc.knn_k=3", "amsc.warmup_epochs=1", "amsc.every=1", "kd.candidates=12", "kd.teacher_top=4"),
    )
    path = Path(__file__).resolve().parents[1] / "scripts" / "amsc_diagnostics.py"
    spec = importlib.util.spec_from_file_location("amsc_diagnostics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--run", str(tmp_path / "p"), "--data", str(noisy_folder), "--knn-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["content", "rank", "centred", "raw", "teacher"]
    users, items = noisy.split(0)
    fresh = AMSC(
        torch.tensor(users),
        torch.tensor(items),
        noisy.n_users,
        torch.tensor(noisy.text_feat),
        torch.tensor(noisy.image_feat),
        AMSCConfig(knn_k=3),
    ).calibrate(None)
    expected = precision_recall_f1(fresh.false_mask.numpy(), noisy.train_noise_labels)["precision"]
    assert f"precision {expected:.3f}" in lines[2]
    with pytest.raises(SystemExit, match="runs no AMSC"):
        run(noisy_folder, tmp_path / "n", method="no_amsc", sets=("kd.candidates=12", "kd.teacher_top=4"))
        module.main(["--run", str(tmp_path / "n"), "--data", str(noisy_folder)])


def test_cli_train_with_method_and_set(noisy_folder, tmp_path):
    from guider.cli import main

    code = main(
        [
            "train",
            "--data",
            str(noisy_folder),
            "--backbone",
            "bpr",
            "--method",
            "kl_kd",
            "--out",
            str(tmp_path / "cli"),
            "--epochs",
            "2",
            "--device",
            "cpu",
            "--set",
            "train.batch_size=64",
            "--set",
            "kd.candidates=12",
            "--set",
            "kd.teacher_top=4",
            "--set",
            "amsc.knn_k=3",
        ]
    )
    assert code == 0
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["kd"]["loss"] == "kl" and config["method"] == "kl_kd"
    assert "variant" not in config and "denoise" not in config and "objective" not in config
