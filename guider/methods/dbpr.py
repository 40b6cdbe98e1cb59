"""DBPR (Denoising BPR): the teacher's BPR loss with false interactions down-weighted.

    L_DBPR = - mean_b m(u_b, i_b) log sigmoid(y_ui - y_uj) + regulariser,
    m = 1 for true rows, m = false_weight * w(u, i) for false rows (0 drops them).

The per-sample term and the regulariser are the teacher backbone's own (`sample_losses`,
`regularization`: for LightGCN, MMRec's -log(1e-10 + sigmoid) and reg_weight x EmbLoss on
the batch's ego embeddings); the mean runs over the whole batch, not over sum(m), so
down-weighted rows contribute less rather than renormalising the rest. With every row
true, m = 1 and DBPR is exactly the backbone's BPR loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from guider.config.sections import Section, setting
from guider.models.base import Embeddings, Recommender


@dataclass(frozen=True)
class DBPRConfig(Section):
    """The `dbpr` section (specification, Method §2)."""

    false_weight: float = setting(0.5, ge=0)  # paper: m = false_weight x w(u, i) for false rows (0 drops them)


def dbpr_weights(false_mask: torch.Tensor, confidence: torch.Tensor, false_weight: float) -> torch.Tensor:
    """[B] m(u, i) of the batch rows: 1 if true, false_weight * w(u, i) if false."""
    if false_weight < 0:
        raise ValueError(f"dbpr.false_weight must be >= 0, got {false_weight}")
    return torch.where(false_mask, false_weight * confidence, torch.ones_like(confidence))


def dbpr_loss(
    model: Recommender, users, pos, neg, weights: torch.Tensor, emb: Embeddings | None = None
) -> torch.Tensor:
    """Scalar DBPR loss of a batch for any backbone following the model protocol."""
    return model.loss(users, pos, neg, emb=emb, weights=weights)
