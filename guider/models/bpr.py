"""MF-BPR (Rendle et al., UAI 2009), as MMRec's `BPR`: dot-product matrix factorisation,
Xavier-normal initialisation, BPR loss plus `reg_weight` x EmbLoss of the batch embeddings."""

from __future__ import annotations

import torch
from torch import nn

from guider.models.base import Embeddings, ModelInputs, Recommender
from guider.models.losses import bpr_per_sample, emb_norm_loss
from guider.models.registry import register


@register("bpr")
class BPR(Recommender):
    def __init__(self, inputs: ModelInputs, embedding_size: int = 64, reg_weight: float = 1e-4):
        super().__init__(inputs)
        self.reg_weight = reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_items, embedding_size)))

    def propagate(self) -> Embeddings:
        return Embeddings(users=self.user_emb, items=self.item_emb)

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]
        return bpr_per_sample((u * emb.items[pos]).sum(-1), (u * emb.items[neg]).sum(-1))

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * emb_norm_loss(emb.users[users], emb.items[pos], emb.items[neg])
