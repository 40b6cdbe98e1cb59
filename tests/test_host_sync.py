"""No host reads on the per-batch path (issue: the hot paths): one epoch's count of
device-to-host reads (.item(), float(), int(), bool(), .tolist(), .numpy(), .cpu(),
nonzero) must not grow with the number of batches, for every backbone and method.

On a GPU each of these waits for the queued kernels; on the CPU they are counted by
wrapping the Tensor methods. The epoch hooks (graph resampling, AMSC) and the read of
the epoch's logs happen once per epoch and are allowed. The OT solver that runs to
convergence (`kd.solver: newton`) is allowed its sanctioned reads, counted apart: one per
block of `kd.check_every` Newton steps ("is every user done?", plus on the CPU the index of
the users left) and its end-of-solve check, a bound per solve that does not depend on the
data's size; never one per iteration."""

import contextlib
import math

import pytest
import torch
from conftest import make_dataset

from guider.config import resolve_run_config
from guider.engine.trainer import Trainer
from guider.methods import distill, method_class
from guider.models import available, get_class

READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu", "nonzero")
TRAINABLE = [b for b in available() if get_class(b).trainable]
METHODS = (
    "none", "tce", "rce", "damrs_plugin", "paper", "no_amsc", "no_dbpr", "kl_kd", "no_kd", "truncated_ot",
    "as_released",
)  # fmt: skip


@contextlib.contextmanager
def counting_host_reads(monkeypatch):
    """counts["n"]: reads outside the converging OT solver; counts["solver"] and
    counts["solves"]: the solver's own reads and its number of calls."""
    counts = {"n": 0, "solver": 0, "solves": 0, "inside": False}

    def wrap(original):
        def counted(*args, **kwargs):
            counts["solver" if counts["inside"] else "n"] += 1
            return original(*args, **kwargs)

        return counted

    solve = distill.solve_semi_dual

    def counted_solve(*args, **kwargs):
        counts["solves"] += 1
        counts["inside"] = True
        try:
            return solve(*args, **kwargs)
        finally:
            counts["inside"] = False

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, wrap(getattr(torch.Tensor, name)))
        patch.setattr(torch, "nonzero", wrap(torch.nonzero))
        patch.setattr(distill, "solve_semi_dual", counted_solve)
        yield counts


def reads_in_one_epoch(monkeypatch, tmp_path, backbone: str, method: str, batch_size: int) -> dict:
    config = resolve_run_config(backbone, method=method, sets=[f"train.batch_size={batch_size}"])
    trainer = Trainer(make_dataset(), tmp_path / f"b{batch_size}", config, torch.device("cpu"), progress=False)
    trainer.run_epoch(0)  # first-epoch work (e.g. lazily built state) is not per batch
    with counting_host_reads(monkeypatch) as counts:
        trainer.run_epoch(1)
    return counts


def solver_reads_allowed_per_solve(kd: distill.KDConfig) -> int:
    """Two reads per block of check_every Newton steps (the count of users left and, on the
    CPU, their index), and the end-of-solve check with its float64 finish (at most 6)."""
    blocks = math.ceil((kd.max_iter or distill.DEFAULT_MAX_ITER["newton"]) / kd.check_every) + 1
    return 2 * blocks + 6


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("backbone", TRAINABLE)
def test_host_reads_per_epoch_do_not_grow_with_batches(monkeypatch, tmp_path, backbone, method):
    if method_class(method).backbone_problem(backbone) is not None:
        pytest.skip(f"{method} does not wrap {backbone}")
    few = reads_in_one_epoch(monkeypatch, tmp_path, backbone, method, batch_size=60)  # 3 batches
    many = reads_in_one_epoch(monkeypatch, tmp_path, backbone, method, batch_size=20)  # 9 batches
    assert many["n"] == few["n"], f"{backbone}/{method}: {few['n']} host reads with 3 batches, {many['n']} with 9"
    kd = resolve_run_config(backbone, method=method).sections.get("kd", distill.KDConfig())
    for counts in (few, many):
        if counts["solves"]:
            bound = solver_reads_allowed_per_solve(kd)
            assert counts["solver"] <= bound * counts["solves"], f"{backbone}/{method}: {counts}"
        else:
            assert counts["solver"] == 0


def test_the_counter_sees_a_per_batch_read(monkeypatch, tmp_path):
    """The counter catches a per-batch .item(): a step that reads its loss grows with batches."""
    original = Trainer._step

    def reading_step(self, batch, epoch, index):
        logs = original(self, batch, epoch, index)
        logs["train_loss"].item()
        return logs

    monkeypatch.setattr(Trainer, "_step", reading_step)
    few = reads_in_one_epoch(monkeypatch, tmp_path, "bpr", "none", batch_size=60)
    many = reads_in_one_epoch(monkeypatch, tmp_path, "bpr", "none", batch_size=20)
    assert many["n"] - few["n"] == 6


def test_the_solver_reads_are_counted_apart_and_bounded(monkeypatch, tmp_path):
    """A `paper` epoch calls the Newton solver once per batch; its reads are counted apart and
    stay within the per-solve bound; the truncated solver (no convergence check) reads nothing."""
    newton = reads_in_one_epoch(monkeypatch, tmp_path, "lightgcn", "paper", batch_size=20)
    assert newton["solves"] == 9 and 0 < newton["solver"] <= 9 * solver_reads_allowed_per_solve(distill.KDConfig())
    truncated = reads_in_one_epoch(monkeypatch, tmp_path, "lightgcn", "truncated_ot", batch_size=20)
    assert truncated["solves"] == 0 and truncated["solver"] == 0
