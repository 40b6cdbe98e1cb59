"""BM3 (Zhou et al., WWW 2023), as MMRec's `BM3`.

Bootstrapped latent representations, no negative sampling. The online network is a
LightGCN (`n_layers`, mean of layers) whose items also add their layer-0 ID embedding,
plus one linear projection per modality; a shared `predictor` (linear d -> d) maps online
vectors into the target space. Targets are the online vectors themselves, detached and
perturbed with dropout (`dropout`, always on, as MMRec's `F.dropout` default). Per
interaction (u, i):

    (1 - cos(pred(u), tgt(i))) + (1 - cos(pred(i), tgt(u)))
    + cl_weight * sum_m [(1 - cos(pred(f_m(i)), tgt(i))) + (1 - cos(pred(f_m(i)), tgt(f_m(i))))]

plus `reg_weight` x EmbLoss over *all* online user and item embeddings (MMRec's choice).
Scores are what MMRec's full_sort_predict computes: pred(u) . pred(i), so
`Embeddings.users/items` are the predictor outputs and the raw online vectors travel in
`extras`. Differences from MMRec, none changing the model: the modality projections
and the target dropout are applied to the batch rows only (same distribution, less work).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import propagate_mean, sym_norm_bipartite_adj, to_torch_sparse
from guider.models.losses import emb_norm_loss
from guider.models.modalities import present_modalities
from guider.models.registry import register


@dataclass(frozen=True)
class BM3Config(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec BM3.yaml (feat_embed_dim 64 too)
    n_layers: int = setting(1, ge=0)  # MMRec BM3.yaml grid [1, 2]; BM3 README: best on Baby = 1
    dropout: float = setting(0.5, ge=0, lt=1)  # grid [0.3, 0.5]; best on Baby = 0.5
    reg_weight: float = setting(0.1, ge=0)  # grid [0.1, 0.01]; best on Baby = 0.1
    cl_weight: float = setting(2.0, ge=0)  # MMRec BM3.yaml

    grid = {"model.n_layers": (1, 2), "model.reg_weight": (0.1, 0.01), "model.dropout": (0.3, 0.5)}  # MMRec BM3.yaml


@register("bm3")
class BM3(Recommender):
    display_name = "BM3"
    Config = BM3Config
    uses_features = True
    needs_negatives = False  # no negative sampling (MMRec: use_neg_sampling False)

    def __init__(self, inputs: ModelInputs, config: BM3Config):
        super().__init__(inputs, config)
        embedding_size = config.embedding_size
        self.n_layers, self.dropout = config.n_layers, config.dropout
        self.reg_weight, self.cl_weight = config.reg_weight, config.cl_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_size)))
        self.predictor = _xavier_normal_linear(embedding_size, embedding_size)
        modalities = present_modalities(inputs)
        # Trainable raw features: MMRec loads them with from_pretrained(freeze=False).
        self.raw_feat = nn.ParameterDict({m: nn.Parameter(f.detach().clone()) for m, f in modalities.items()})
        self.feat_proj = nn.ModuleDict(
            {m: _xavier_normal_linear(f.shape[1], embedding_size) for m, f in modalities.items()}
        )
        adj = sym_norm_bipartite_adj(inputs.train_matrix())
        self.register_buffer("norm_adj", to_torch_sparse(adj, inputs.device), persistent=False)

    def propagate(self) -> Embeddings:
        ego = torch.cat([self.user_emb, self.item_emb], dim=0)  # [U+I, d]
        out = propagate_mean(self.norm_adj, ego, self.n_layers)  # [U+I, d]
        users_online = out[: self.n_users]  # [U, d]
        items_online = out[self.n_users :] + self.item_emb  # [I, d]
        return Embeddings(
            users=self.predictor(users_online),
            items=self.predictor(items_online),
            extras={"users_online": users_online, "items_online": items_online},
        )

    def sample_losses(self, emb, users, pos, neg):
        """[B] BM3 loss of each (user, positive) pair; `neg` is ignored."""
        user_target = self._target(emb.extras["users_online"][users])  # [B, d]
        item_target = self._target(emb.extras["items_online"][pos])  # [B, d]
        per_sample = _cos_loss(emb.users[users], item_target) + _cos_loss(emb.items[pos], user_target)
        for modality, proj in self.feat_proj.items():
            feat_online = proj(self.raw_feat[modality][pos])  # [B, d]
            feat_pred = self.predictor(feat_online)
            aligned = _cos_loss(feat_pred, item_target) + _cos_loss(feat_pred, self._target(feat_online))
            per_sample = per_sample + self.cl_weight * aligned
        return per_sample

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * emb_norm_loss(emb.extras["users_online"], emb.extras["items_online"])

    def _target(self, online: torch.Tensor) -> torch.Tensor:
        """Detached, dropout-perturbed copy (dropout always on, as in MMRec)."""
        return F.dropout(online.detach(), self.dropout, training=True)


def _cos_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(online, target, dim=-1)  # [B]


def _xavier_normal_linear(d_in: int, d_out: int) -> nn.Linear:
    """nn.Linear with xavier-normal weights and PyTorch's default bias, as BM3 initialises."""
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_normal_(layer.weight)
    return layer
