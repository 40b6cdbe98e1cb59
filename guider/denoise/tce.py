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
from typing import Any

import torch

from guider.denoise.config import section
from guider.objective import Batch, Objective, register_objective


@register_objective("tce")
class TruncatedLoss(Objective):
    defaults = {"tce": {"max_rate": 0.2, "ramp_epochs": 10}}

    def __init__(self, model, inputs, dataset, config: dict[str, Any]):
        super().__init__(model, inputs, dataset, config)
        cfg = section(config, self.defaults, "tce")
        self.max_rate, self.ramp_epochs = float(cfg["max_rate"]), float(cfg["ramp_epochs"])
        if not 0.0 <= self.max_rate < 1.0 or self.ramp_epochs < 0:
            raise ValueError(f"tce.max_rate must be in [0, 1) and tce.ramp_epochs >= 0; got {cfg}")
        batch_size = int((config.get("train") or {}).get("batch_size", 2048))
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
            emb, batch.users[keep], batch.pos[keep], batch.neg[keep]
        )
        return loss, {"drop_rate": rate}
