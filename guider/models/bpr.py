"""MF-BPR (Rendle et al., UAI 2009), as MMRec's `BPR`: dot-product matrix factorisation,
Xavier-normal initialisation, BPR loss plus `reg_weight` x EmbLoss of the batch embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.losses import bpr_per_sample, emb_norm_loss
from guider.models.registry import register


@dataclass(frozen=True)
class BPRConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec BPR.yaml / overall.yaml
    reg_weight: float = setting(1e-4, ge=0)  # MMRec BPR.yaml grid; 1e-4 (MMRec's run on Baby)

    grid = {"model.reg_weight": (2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)}  # MMRec BPR.yaml


@register("bpr")
class BPR(Recommender):
    display_name = "BPR"
    Config = BPRConfig

    def __init__(self, inputs: ModelInputs, config: BPRConfig):
        super().__init__(inputs, config)
        self.reg_weight = config.reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, config.embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_items, config.embedding_size)))

    def propagate(self) -> Embeddings:
        return Embeddings(users=self.user_emb, items=self.item_emb)

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]
        return bpr_per_sample((u * emb.items[pos]).sum(-1), (u * emb.items[neg]).sum(-1))

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * emb_norm_loss(emb.users[users], emb.items[pos], emb.items[neg])
