"""Training objectives: what one optimisation step of the student computes.

The trainer owns the loop (sampling, optimiser, evaluation, checkpoints) and delegates
the loss of each batch to an `Objective`. Plain training uses the backbone's own loss;
denoising plug-ins (GUIDER, T-CE, R-CE) are objectives too, registered by name here, so
no backbone contains plug-in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from guider.data.dataset import Dataset
from guider.models.base import ModelInputs, Recommender


@dataclass
class Batch:
    """One training batch of (user, positive, negative) triples."""

    users: torch.Tensor  # [B] int64
    pos: torch.Tensor  # [B] int64
    neg: torch.Tensor  # [B] int64
    rows: torch.Tensor  # [B] int64 index into the train interaction arrays (ModelInputs.train_*)


# evaluate(score_fn, split) -> {"recall@20": ..., ...}; score_fn(users [B]) -> scores [B, n_items]
Evaluator = Callable[[Callable[[torch.Tensor], torch.Tensor], str], dict[str, float]]


class Objective:
    """Plain training: the backbone's loss on the batch. Base class of all plug-ins."""

    defaults: dict[str, dict[str, Any]] = {}  # config sections this objective owns, with defaults

    def __init__(self, model: Recommender, inputs: ModelInputs, dataset: Dataset, config: dict[str, Any]):
        self.model = model
        self.inputs = inputs
        self.dataset = dataset
        self.config = config

    @property
    def needs_negatives(self) -> bool:
        """Whether batches need sampled negatives; plug-ins that use them (a BPR teacher)
        override this with True."""
        return self.model.needs_negatives

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Per-epoch work (e.g. recalibration); the model's own hook is called by the trainer."""

    def step(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the student loss to back-propagate and scalars to log."""
        loss = self.model.loss(batch.users, batch.pos, batch.neg)
        return loss, {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def finalize(self, run_dir: Path, evaluate: Evaluator) -> dict[str, Any]:
        """Write plug-in artefacts into `run_dir`; return extra keys for metrics.json."""
        return {}


_OBJECTIVES: dict[str, type[Objective]] = {"none": Objective}


def register_objective(name: str):
    def wrap(cls: type[Objective]) -> type[Objective]:
        _OBJECTIVES[name] = cls
        return cls

    return wrap


def objective_class(name: str) -> type[Objective]:
    _load_plugins()
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown variant/denoiser {name!r}; available: {', '.join(sorted(_OBJECTIVES))}") from None


def available_objectives() -> list[str]:
    _load_plugins()
    return sorted(_OBJECTIVES)


def _load_plugins() -> None:
    """Import the plug-in package so its objectives register themselves."""
    import importlib.util

    if importlib.util.find_spec("guider.denoise") is not None:
        importlib.import_module("guider.denoise")
