"""The ID teacher: any registered backbone with its own Adam optimiser, trained in sync
with the student and never touching the global random stream.

Its initialisation runs under a forked RNG seeded from the run seed, and its per-epoch
hook (e.g. FREEDOM's edge pruning) gets its own generator, so adding a teacher does not
change the student's initialisation or the trainer's sampling: with `kd.weight = 0` the
student trains exactly as without GUIDER.

The teacher is configured like any model (`TeacherConfig`, the `teacher` section):
`teacher.backbone`, `teacher.lr` (its own Adam) and `teacher.model.*`, checked against the
teacher backbone's own Config, so a key that backbone does not have is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from guider.config.sections import ConfigError, Section, deep_merge, setting
from guider.engine.optim import adam
from guider.models import build_model, get_class, model_config
from guider.models.base import Embeddings, ModelConfig, ModelInputs

TEACHER_SEED_OFFSET = 7_919  # keeps the teacher's random stream apart from the student's


def mixed_seed(seed: int, *parts: int) -> int:
    value = int(seed) * 1_000_003 + TEACHER_SEED_OFFSET
    for part in parts:
        value = value * 1_000_033 + int(part)
    return value % (2**63)


@dataclasses.dataclass(frozen=True)
class TeacherConfig(Section):
    """The `teacher` section of GUIDER (specification, Method §2)."""

    backbone: str = setting("lightgcn")  # paper: an ID recommender, LightGCN by default
    lr: float = setting(0.001, gt=0)  # ours: the teacher's own Adam, at MMRec's learning rate
    model: ModelConfig | None = None  # the teacher backbone's Config: its defaults + model_defaults + overrides

    # per teacher backbone, the method's changes to that backbone's defaults
    model_defaults: ClassVar[dict[str, dict[str, Any]]] = {"lightgcn": {"n_layers": 2}}  # paper: 2 layers, dim 64

    @classmethod
    def build(cls, values: Mapping[str, Any] | None, name: str):
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"config section {name} must be a mapping of keys to values, got {values!r}")
        values = dict(values or {})
        model_values = values.pop("model", None)
        head = super().build(values, name)
        try:
            backbone = get_class(head.backbone)
        except ConfigError as err:
            raise ConfigError(f"{name}.backbone: {err}") from None
        if not backbone.trainable:
            raise ConfigError(f"{name}.backbone {head.backbone!r} is not trainable; a teacher must learn")
        if model_values is not None and not isinstance(model_values, Mapping):
            raise ConfigError(f"{name}.model must be a mapping of the teacher backbone's hyper-parameters")
        defaults = cls.model_defaults.get(head.backbone, {})
        model = model_config(head.backbone, deep_merge(defaults, model_values or {}), f"{name}.model")
        return dataclasses.replace(head, model=model)


class Teacher:
    """A backbone trained by its own optimiser; `step` returns the (detached) loss."""

    def __init__(
        self,
        config: TeacherConfig,
        inputs: ModelInputs,
        seed: int,
        extra_modules: dict[str, torch.nn.Module] | None = None,
    ):
        self.seed = int(seed)
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(mixed_seed(seed, 0))
            self.model = build_model(config.backbone, inputs, config.model)
            self.extra = torch.nn.ModuleDict(extra_modules or {}).to(inputs.device)
        params = [p for p in list(self.model.parameters()) + list(self.extra.parameters()) if p.requires_grad]
        self.optimizer = adam(params, lr=config.lr)
        self.generator = torch.Generator()

    def on_epoch_start(self, epoch: int) -> None:
        self.model.train()
        self.generator.manual_seed(mixed_seed(self.seed, 1, epoch))
        self.model.on_epoch_start(epoch, self.generator)

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimiser step on `loss` (computed from this teacher's parameters); returns the
        detached loss, left on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

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
