"""LightGCN (He et al., SIGIR 2020), as MMRec's `LightGCN`.

Embeddings propagated on the symmetric-normalised user-item graph; the final embedding is
the mean over layers 0..L; BPR loss plus `reg_weight` x MMRec's EmbLoss on the layer-0
(ego) embeddings of the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from guider.models.base import Embeddings, ModelInputs, Recommender
from guider.models.graph import propagate_mean, sym_norm_bipartite_adj, to_torch_sparse
from guider.models.losses import bpr_per_sample, emb_norm_loss
from guider.models.registry import register


@register("lightgcn")
class LightGCN(Recommender):
    def __init__(self, inputs: ModelInputs, embedding_size: int = 64, n_layers: int = 3, reg_weight: float = 1e-4):
        super().__init__(inputs)
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_size)))
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
