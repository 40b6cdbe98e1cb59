"""LightGCN (He et al., SIGIR 2020), as MMRec's `LightGCN`.

Embeddings propagated on the symmetric-normalised user-item graph; the final embedding is
the mean over layers 0..L; BPR loss plus `reg_weight` x MMRec's EmbLoss on the layer-0
(ego) embeddings of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import propagate_mean, sym_norm_bipartite_adj, to_torch_sparse
from guider.models.losses import bpr_per_sample, emb_norm_loss
from guider.models.registry import register


@dataclass(frozen=True)
class LightGCNConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec LightGCN.yaml / overall.yaml
    n_layers: int = setting(3, ge=0)  # MMRec LightGCN.yaml grid [1, 2, 3, 4]
    reg_weight: float = setting(1e-4, ge=0)  # MMRec LightGCN.yaml grid [1e-2 .. 1e-6]

    grid = {"model.n_layers": (1, 2, 3, 4), "model.reg_weight": (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)}  # MMRec LightGCN.yaml


@register("lightgcn")
class LightGCN(Recommender):
    display_name = "LightGCN"
    Config = LightGCNConfig

    def __init__(self, inputs: ModelInputs, config: LightGCNConfig):
        super().__init__(inputs, config)
        self.n_layers = config.n_layers
        self.reg_weight = config.reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, config.embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, config.embedding_size)))
        adj = sym_norm_bipartite_adj(inputs.train_matrix())
        self.register_buffer("norm_adj", to_torch_sparse(adj, inputs.device), persistent=False)

    def propagate(self) -> Embeddings:
        ego = torch.cat([self.user_emb, self.item_emb], dim=0)  # [U+I, d]
        out = propagate_mean(self.norm_adj, ego, self.n_layers)
        return Embeddings(users=out[: self.n_users], items=out[self.n_users :])

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]
        return bpr_per_sample((u * emb.items[pos]).sum(-1), (u * emb.items[neg]).sum(-1))

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * emb_norm_loss(self.user_emb[users], self.item_emb[pos], self.item_emb[neg])
