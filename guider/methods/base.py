"""Training methods: what one optimisation step of the student computes.

The trainer owns the loop (sampling, optimiser, evaluation, checkpoints) and delegates
the loss of each batch to a `Method`. Plain training uses the backbone's own loss;
denoising plug-ins (GUIDER, T-CE, R-CE, DA-MRS) are methods too, registered by name here,
so no backbone contains plug-in code. The registered name is the run's *method*: one name
across `guider train --method`, config.json, metrics.json, the workflow and the reports.

This module imports no method: the built-in ones are imported (and so registered) by the
package, guider/methods/__init__.py, whose `method_class` / `available_methods` callers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import torch

from guider.config.sections import ConfigError, Section
from guider.data.format.dataset import Dataset
from guider.models.base import Embeddings, ModelInputs, Recommender

if TYPE_CHECKING:
    from guider.config import RunConfig


class NonFiniteLoss(FloatingPointError):
    """A training loss (the student's or a plug-in's teacher's) became NaN or infinite."""


class NonFiniteWatch:
    """The first non-finite loss of a pass (its batch index and value), kept on the device so
    no step waits for the host; read once, at the end of the pass (`raise_if_seen`)."""

    def __init__(self, device: torch.device, what: str = "training"):
        self.what = what
        self.batch = torch.full((), -1, dtype=torch.int64, device=device)
        self.value = torch.zeros((), device=device)

    def note(self, loss: torch.Tensor, index: int) -> None:
        first = (~torch.isfinite(loss.detach())) & (self.batch < 0)
        self.batch = torch.where(first, index, self.batch)
        self.value = torch.where(first, loss.detach().float(), self.value)

    def raise_if_seen(self, epoch: int, advice: str = "") -> None:
        batch, value = torch.stack([self.batch.double(), self.value.double()]).tolist()
        if batch >= 0:
            where = f"{self.what} loss is {value} at epoch {epoch}, batch {int(batch)}"
            raise NonFiniteLoss(f"{where}; {advice}" if advice else where)


@dataclass
class Batch:
    """One training batch of (user, positive, negative) triples."""

    users: torch.Tensor  # [B] int64
    pos: torch.Tensor  # [B] int64
    neg: torch.Tensor | None  # [B] int64, or None when neither backbone nor objective reads negatives
    rows: torch.Tensor  # [B] int64 index into the train interaction arrays (ModelInputs.train_*)


# evaluate(score_fn, split) -> {"recall@20": ..., ...}; score_fn(users [B]) -> scores [B, n_items]
Evaluator = Callable[[Callable[[torch.Tensor], torch.Tensor], str], dict[str, float]]


class Method:
    """Plain training: the backbone's loss on the batch. Base class of all plug-ins.

    Class attributes a plug-in sets: `display_name` (tables and figures), `sections` (its
    typed config sections, name -> Section class), `requires_features` ("none", "any" or
    "both": the item features the method needs), `reads_negatives` (True when it reads
    sampled negatives itself), `early_stopping`, `artifacts` (files it writes into the
    run folder, so a restarted run can clear them) and `grid` (its hyper-parameter grid,
    `section.key` -> values, for guider.tuning.grids; read from the class itself, not inherited).
    """

    name: ClassVar[str] = "none"
    display_name: ClassVar[str] = "plain"
    # its place in the report: plain, guider (GUIDER itself), ablation (the ablation table),
    # released (the authors' code), baseline (a denoising baseline: the baselines table), other
    role: ClassVar[str] = "plain"
    sections: ClassVar[dict[str, type[Section]]] = {}
    requires_features: ClassVar[str] = "none"
    reads_negatives: ClassVar[bool] = False  # True: the objective itself reads Batch.neg
    artifacts: ClassVar[tuple[str, ...]] = ()
    early_stopping: ClassVar[bool] = True
    stop_on_nan: ClassVar[bool] = False  # True: a non-finite loss ends training, keeping the best result

    @classmethod
    def backbone_problem(cls, backbone: str) -> str | None:
        """Why this method cannot wrap `backbone` (a registered name), or None when it can."""
        return None

    @classmethod
    def run_defaults(cls, backbone: str) -> dict[str, dict[str, Any]]:
        """The method's own defaults for this backbone, by section ("train", "model", ...):
        they sit above the backbone's train defaults and below every user setting."""
        return {}

    def __init__(self, model: Recommender, inputs: ModelInputs, dataset: Dataset, config: RunConfig):
        self.model = model
        self.inputs = inputs
        self.dataset = dataset
        self.config = config

    @property
    def needs_negatives(self) -> bool:
        """Whether batches need sampled negatives: the backbone's loss or the objective reads them."""
        return self.reads_negatives or self.model.needs_negatives

    def negative_items(self) -> np.ndarray | None:
        """The item ids negatives are drawn from (None: every item of the catalogue)."""
        return None

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Per-epoch work (e.g. recalibration); the model's own hook is called by the trainer."""

    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the student loss to back-propagate and scalars to log."""
        loss = self.model.loss(batch.users, batch.pos, batch.neg)
        return loss, {}

    def eval_embeddings(self) -> Embeddings:
        """The representation evaluation ranks with; a plug-in that changes the backbone's
        representation (DA-MRS adds its graph-propagated item embeddings) overrides it."""
        return self.model.eval_embeddings()

    def scores(self, emb: Embeddings, users: torch.Tensor) -> torch.Tensor:
        """Full-ranking scores [B, n_items] of `users` from `eval_embeddings()`'s result."""
        return self.model.scores(emb, users)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def finalize(self, run_dir: Path, evaluate: Evaluator) -> dict[str, Any]:
        """Write plug-in artefacts into `run_dir`; return extra keys for metrics.json."""
        return {}


_METHODS: dict[str, type[Method]] = {"none": Method}
FEATURE_REQUIREMENTS = ("none", "any", "both")
ROLES = ("plain", "guider", "ablation", "released", "baseline", "other")


def register_method(name: str):
    """Class decorator: make a training method available as `--method name`."""

    def wrap(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} registered twice")
        if cls.requires_features not in FEATURE_REQUIREMENTS:
            raise ValueError(f"method {name!r}: requires_features must be one of {FEATURE_REQUIREMENTS}")
        if "role" not in vars(cls):
            cls.role = "other"  # a method says what it is; a subclass does not inherit its parent's place
        if cls.role not in ROLES:
            raise ValueError(f"method {name!r}: role must be one of {ROLES}, got {cls.role!r}")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def registered_method(name: str) -> type[Method]:
    """The class registered as `name` (guider.methods.method_class, which registers the
    built-in methods first, is what callers use)."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(_METHODS)}") from None


def registered_methods() -> list[str]:
    return list(_METHODS)
