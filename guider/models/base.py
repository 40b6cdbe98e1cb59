"""The small protocol every backbone follows, so trainers and plug-ins (GUIDER, T-CE,
R-CE) can wrap any of them without knowing which one it is.

One training step of a backbone is:

    emb = model.propagate()                          # full forward pass (graph convs etc.)
    per_sample = model.sample_losses(emb, u, i, j)   # [B] main loss of each (u, i, j) triple
    loss = per_sample.mean() + model.regularization(emb, u, i, j)

`Recommender.loss` does exactly that, optionally weighting the per-sample terms, which is
where denoising plug-ins hook in. Scores are always `model.scores(emb, users, items)`.

Hyper-parameters: each backbone declares one typed `Config` (a frozen dataclass derived from
`ModelConfig`, its fields MMRec's defaults with their provenance) and its constructor takes
`(inputs, config)`. The trainer resolves `model.*` settings against that class before any
work, so a backbone registered from outside the package gets `--set model.<key>=...` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from guider.config.sections import Section


@dataclass
class ModelInputs:
    """What a backbone may see at construction: sizes, the train interactions, features."""

    n_users: int
    n_items: int
    train_users: np.ndarray  # [N] int64
    train_items: np.ndarray  # [N] int64
    text_feat: torch.Tensor | None = None  # [n_items, d_t] float32, on `device`
    image_feat: torch.Tensor | None = None  # [n_items, d_v] float32, on `device`
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def train_matrix(self) -> sp.csr_matrix:
        """Binary user x item CSR of the train interactions (duplicates collapsed)."""
        data = np.ones(len(self.train_users), dtype=np.float32)
        mat = sp.csr_matrix((data, (self.train_users, self.train_items)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for an index of any shape ([*index.shape, d]), as `index_select` on the
    flattened index: the same values and gradient as `table[index]` (tests/test_models.py),
    but its backward is one `index_add_` instead of an accumulating `index_put_`, which for
    a 2-D index is ~3x slower on CPU (GUIDER's [128, 50] candidates: 0.5 vs 2.3 ms forward +
    backward on 2 threads, benchmarks/bench_kernels.py)."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[-1])


@dataclass
class Embeddings:
    """Output of one forward pass: scoring embeddings (score = users @ items.T) and extras."""

    users: torch.Tensor  # [n_users, d]
    items: torch.Tensor  # [n_items, d]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig(Section):
    """Hyper-parameters of a backbone: subclass it with one `setting(...)` field per value.

    `grid` records the source's search grid, keyed `model.<field>` or `train.<field>` (MMRec
    searches some learning rates); `train_defaults` the backbone's own changes to the trainer's
    defaults (MMRec's per-model yaml keys such as LATTICE's learning_rate_scheduler)."""

    train_defaults: ClassVar[dict[str, Any]] = {}


class Recommender(nn.Module):
    """Base class of all backbones; `Config` holds the hyper-parameters, `__init__(inputs, config)`."""

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""  # as tables show it (default: the registered name)
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    uses_features: ClassVar[bool] = False  # needs text/image features
    trainable: ClassVar[bool] = True  # False for heuristics such as most-popular
    needs_negatives: ClassVar[bool] = True  # False: its loss ignores the sampled negatives
    # propagate() is the same function of the parameters in train and eval mode (no dropout,
    # no resampled graph), so a training forward can stand in for an eval forward.
    train_propagate_equals_eval: ClassVar[bool] = True

    def __init__(self, inputs: ModelInputs, config: ModelConfig | None = None):
        super().__init__()
        self.config = self.Config() if config is None else config
        self.n_users = inputs.n_users
        self.n_items = inputs.n_items
        if self.uses_features and inputs.text_feat is None and inputs.image_feat is None:
            raise ValueError(f"backbone {self.name!r} needs text or image features; the dataset has none")

    # --- to implement -------------------------------------------------------------------
    def propagate(self) -> Embeddings:
        """Full forward pass over all users and items (with autograd in training mode)."""
        raise NotImplementedError

    def sample_losses(self, emb: Embeddings, users, pos, neg) -> torch.Tensor:
        """[B] main loss of each training triple (user, positive item, sampled negative)."""
        raise NotImplementedError

    def regularization(self, emb: Embeddings, users, pos, neg) -> torch.Tensor:
        """Scalar regulariser of the batch (0 when the model has none)."""
        return torch.zeros((), device=emb.users.device)

    # --- shared behaviour ---------------------------------------------------------------
    def loss(self, users, pos, neg, emb: Embeddings | None = None, weights: torch.Tensor | None = None):
        """Batch loss: (weighted) mean of the per-sample losses plus the regulariser."""
        emb = self.propagate() if emb is None else emb
        per_sample = self.sample_losses(emb, users, pos, neg)
        main = per_sample.mean() if weights is None else (weights * per_sample).mean()
        return main + self.regularization(emb, users, pos, neg)

    def scores(self, emb: Embeddings, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of `users` [B] for all items ([B, n_items]) or for candidates `items` [B, C]."""
        u = emb.users[users]  # [B, d]
        if items is None:
            return u @ emb.items.T  # [B, n_items]
        return torch.einsum("bd,bcd->bc", u, gather_rows(emb.items, items))  # [B, C]

    def item_embeddings(self, emb: Embeddings | None = None) -> torch.Tensor:
        """[n_items, d] item representations (used e.g. for item-item similarity)."""
        return (self.propagate() if emb is None else emb).items

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Hook for per-epoch work such as resampling a dropped-edge graph."""

    @torch.no_grad()
    def eval_embeddings(self) -> Embeddings:
        """Forward pass in eval mode without autograd, for evaluation.

        Detached, because a backbone may return its embedding Parameters themselves
        (BPR, VBPR users), which `no_grad` leaves requiring grad.
        """
        was_training = self.training
        self.eval()
        try:
            emb = self.propagate()
            return Embeddings(users=emb.users.detach(), items=emb.items.detach(), extras=emb.extras)
        finally:
            self.train(was_training)
