"""Loss terms shared by backbones, written as MMRec writes them (for comparable numbers)."""

from __future__ import annotations

import torch


def bpr_per_sample(pos_scores: torch.Tensor, neg_scores: torch.Tensor, gamma: float = 1e-10) -> torch.Tensor:
    """[B] BPR terms -log(gamma + sigmoid(pos - neg)), MMRec's BPRLoss before its mean."""
    return -torch.log(gamma + torch.sigmoid(pos_scores - neg_scores))


def emb_norm_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of the (unsquared) Frobenius norms, divided by the batch size."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]
