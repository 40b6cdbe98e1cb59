"""No host reads on the per-batch path (issue: the hot paths): one epoch's count of
device-to-host reads (.item(), float(), int(), bool(), .tolist(), .numpy(), .cpu(),
nonzero) must not grow with the number of batches, for every backbone and method.

On a GPU each of these waits for the queued kernels; on the CPU they are counted by
wrapping the Tensor methods. The epoch hooks (graph resampling, AMSC) and the read of
the epoch's logs happen once per epoch and are allowed."""

import contextlib

import pytest
import torch
from conftest import make_dataset

from guider.config import resolve_run_config
from guider.engine.trainer import Trainer
from guider.methods import method_class
from guider.models import available, get_class

READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu", "nonzero")
TRAINABLE = [b for b in available() if get_class(b).trainable]
METHODS = ("none", "tce", "rce", "damrs_plugin", "paper", "no_amsc", "no_dbpr", "kl_kd", "no_kd", "as_released")


@contextlib.contextmanager
def counting_host_reads(monkeypatch):
    counts = {"n": 0}

    def wrap(original):
        def counted(*args, **kwargs):
            counts["n"] += 1
            return original(*args, **kwargs)

        return counted

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, wrap(getattr(torch.Tensor, name)))
        patch.setattr(torch, "nonzero", wrap(torch.nonzero))
        yield counts


def reads_in_one_epoch(monkeypatch, tmp_path, backbone: str, method: str, batch_size: int) -> int:
    config = resolve_run_config(backbone, method=method, sets=[f"train.batch_size={batch_size}"])
    trainer = Trainer(make_dataset(), tmp_path / f"b{batch_size}", config, torch.device("cpu"), progress=False)
    trainer.run_epoch(0)  # first-epoch work (e.g. lazily built state) is not per batch
    with counting_host_reads(monkeypatch) as counts:
        trainer.run_epoch(1)
    return counts["n"]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("backbone", TRAINABLE)
def test_host_reads_per_epoch_do_not_grow_with_batches(monkeypatch, tmp_path, backbone, method):
    if method_class(method).backbone_problem(backbone) is not None:
        pytest.skip(f"{method} does not wrap {backbone}")
    few = reads_in_one_epoch(monkeypatch, tmp_path, backbone, method, batch_size=60)  # 3 batches
    many = reads_in_one_epoch(monkeypatch, tmp_path, backbone, method, batch_size=20)  # 9 batches
    assert many == few, f"{backbone}/{method}: {few} host reads with 3 batches, {many} with 9"


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
    assert many - few == 6
