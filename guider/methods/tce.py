"""T-CE (Truncated loss; Wang et al., "Denoising Implicit Feedback for Recommendation",
WSDM 2021) on any backbone: each batch drops its largest-loss fraction of training
triples, the drop rate ramping linearly from 0 to `tce.max_rate`.

The original drops positives of a point-wise BCE loss; with the pairwise losses of our
backbones each triple (u, i, j) stands for its positive (u, i), so the largest per-triple
losses (`sample_losses`) are dropped: int((1 - rate) B) triples are kept, as the original
keeps int((1 - rate) n). The original ramps over `num_gradual` iterations (30,000 there,
about 14 epochs of Amazon-book); here the ramp is given in epochs (`tce.ramp_epochs`)
and advances every batch. The regulariser covers the kept triples only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from guider.config.sections import Section, setting
from guider.methods.base import Batch, Method, register_method

if TYPE_CHECKING:
    from guider.config import RunConfig


@dataclass(frozen=True)
class TCEConfig(Section):
    """The `tce` section."""

    max_rate: float = setting(0.2, ge=0, lt=1)  # Wang et al.: drop rate reached after the ramp (0.2 in their runs)
    ramp_epochs: float = setting(10.0, ge=0)  # ours: the ramp in epochs (theirs: num_gradual 30,000 iterations)


@register_method("tce")
class TruncatedLoss(Method):
    display_name = "T-CE"
    role = "baseline"
    sections = {"tce": TCEConfig}

    def __init__(self, model, inputs, dataset, config: RunConfig):
        super().__init__(model, inputs, dataset, config)
        cfg: TCEConfig = config.section("tce")
        self.max_rate, self.ramp_epochs = cfg.max_rate, cfg.ramp_epochs
        batch_size = config.train.batch_size
        self.steps_per_epoch = max(1, math.ceil(len(inputs.train_users) / batch_size))
        self.epoch, self.batch_index = 0, 0

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self.epoch, self.batch_index = epoch, 0

    def drop_rate(self) -> float:
        """Linear ramp over training steps, reaching max_rate after ramp_epochs epochs."""
        if self.ramp_epochs == 0:
            return self.max_rate
        step = self.epoch * self.steps_per_epoch + self.batch_index
        return self.max_rate * min(1.0, step / (self.ramp_epochs * self.steps_per_epoch))

    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        rate = self.drop_rate()
        self.batch_index += 1
        emb = self.model.propagate()
        per_sample = self.model.sample_losses(emb, batch.users, batch.pos, batch.neg)  # [B]
        n_keep = max(1, int((1.0 - rate) * len(per_sample)))
        keep = torch.argsort(per_sample.detach(), stable=True)[:n_keep]  # smallest losses
        loss = per_sample[keep].mean() + self.model.regularization(
            emb, batch.users[keep], batch.pos[keep], None if batch.neg is None else batch.neg[keep]
        )
        return loss, {"drop_rate": rate}
