"""The ID teacher: any registered backbone with its own Adam optimiser, trained in sync
with the student and never touching the global random stream.

Its initialisation runs under a forked RNG seeded from the run seed, and its per-epoch
hook (e.g. FREEDOM's edge pruning) gets its own generator, so adding a teacher does not
change the student's initialisation or the trainer's sampling: with `kd.weight = 0` the
student trains exactly as without GUIDER.
"""

from __future__ import annotations

from typing import Any

import torch

from guider.models import build_model, default_hparams
from guider.models.base import Embeddings, ModelInputs
from guider.optim import adam

TEACHER_SEED_OFFSET = 7_919  # keeps the teacher's random stream apart from the student's


def mixed_seed(seed: int, *parts: int) -> int:
    value = int(seed) * 1_000_003 + TEACHER_SEED_OFFSET
    for part in parts:
        value = value * 1_000_033 + int(part)
    return value % (2**63)


class Teacher:
    """A backbone trained by its own optimiser; `step` returns the (detached) loss."""

    def __init__(
        self,
        backbone: str,
        inputs: ModelInputs,
        hparams: dict[str, Any],
        lr: float,
        seed: int,
        extra_modules: dict[str, torch.nn.Module] | None = None,
    ):
        known = default_hparams(backbone)
        overrides = {k: v for k, v in hparams.items() if k in known and v is not None}
        self.seed = int(seed)
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(mixed_seed(seed, 0))
            self.model = build_model(backbone, inputs, overrides)
            self.extra = torch.nn.ModuleDict(extra_modules or {}).to(inputs.device)
        params = [p for p in list(self.model.parameters()) + list(self.extra.parameters()) if p.requires_grad]
        self.optimizer = adam(params, lr=lr)
        self.generator = torch.Generator()

    def on_epoch_start(self, epoch: int) -> None:
        self.model.train()
        self.generator.manual_seed(mixed_seed(self.seed, 1, epoch))
        self.model.on_epoch_start(epoch, self.generator)

    def step(self, loss: torch.Tensor) -> float:
        """One optimiser step on `loss` (computed from this teacher's parameters)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def embeddings(self) -> Embeddings:
        """Current embeddings in eval mode (full graph), detached."""
        return self.model.eval_embeddings()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "extra": self.extra.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.extra.load_state_dict(state["extra"])
        self.optimizer.load_state_dict(state["optimizer"])
