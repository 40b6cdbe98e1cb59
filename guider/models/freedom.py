"""FREEDOM (Zhou & Shen, ACM MM 2023), as MMRec's `FREEDOM`.

Two graphs:
- a *frozen* item-item kNN graph built once from the raw features (cosine top-k per
  modality, each D^-1/2 A D^-1/2 normalised, mixed `mm_image_weight` : 1 - weight);
  the item ID embeddings propagated `n_mm_layers` times on it are added to the items;
- a *denoised* user-item graph: every epoch (`on_epoch_start`) a fraction `dropout` of
  the train edges is pruned, keeping edges with probability proportional to
  1/sqrt(d_u d_i) (degree-sensitive: edges between popular nodes go first); the kept
  subgraph is re-normalised and used for LightGCN propagation (`n_ui_layers`, mean of
  layers). Evaluation uses the full normalised graph.

Loss: BPR (MMRec's logsigmoid form) on the final embeddings plus `reg_weight` x a BPR
term of the user against each modality's projected features (the raw features are
trainable, as MMRec loads them with `from_pretrained(freeze=False)`). Both are
per-interaction terms, so both are returned by `sample_losses` (a denoising plug-in
weights them together).

Differences from MMRec, none changing the model: the kNN graph is computed in row
chunks (no dense n_items x n_items matrix) and rows of zero norm get no NaN; modality
projections are applied to the batch rows only (the same numbers, less work); the
projections' width is `embedding_size` (MMRec's `feat_embed_dim` must equal it anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import (
    bipartite_edge_norm,
    knn_graph,
    propagate_mean,
    sparse_matmul,
    sym_norm_bipartite_adj,
    sym_normalize,
    symmetric_bipartite,
    to_csr,
    to_torch_sparse,
    transpose_csr,
)
from guider.models.modalities import present_modalities
from guider.models.registry import register


@dataclass(frozen=True)
class FREEDOMConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec FREEDOM.yaml; also the projections' width (feat_embed_dim 64)
    knn_k: int = setting(10, ge=1)  # MMRec FREEDOM.yaml
    mm_image_weight: float = setting(0.1, ge=0, le=1)  # item graph = 0.1 image kNN + 0.9 text kNN
    n_mm_layers: int = setting(1, ge=0)  # MMRec FREEDOM.yaml
    n_ui_layers: int = setting(2, ge=0)  # MMRec FREEDOM.yaml
    # MMRec FREEDOM.yaml grid [0.8, 0.9]: fraction of train edges pruned per epoch
    dropout: float = setting(0.8, ge=0, lt=1)
    # grid [0, 1e-5, 1e-4, 1e-3]; neither MMRec nor the FREEDOM repo publishes the Baby
    # winner: 0.8 / 1e-4 chosen, unverified (lambda_coeff, weight_size, cf_model: unused by MMRec)
    reg_weight: float = setting(1e-4, ge=0)

    grid = {"model.dropout": (0.8, 0.9), "model.reg_weight": (0.0, 1e-5, 1e-4, 1e-3)}  # MMRec FREEDOM.yaml


@register("freedom")
class FREEDOM(Recommender):
    display_name = "FREEDOM"
    Config = FREEDOMConfig
    uses_features = True
    train_propagate_equals_eval = False  # training propagates on the pruned graph

    def __init__(self, inputs: ModelInputs, config: FREEDOMConfig):
        super().__init__(inputs, config)
        embedding_size, knn_k, mm_image_weight = config.embedding_size, config.knn_k, config.mm_image_weight
        self.n_mm_layers, self.n_ui_layers = config.n_mm_layers, config.n_ui_layers
        self.dropout, self.reg_weight = config.dropout, config.reg_weight
        dropout = config.dropout
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, embedding_size)))
        modalities = present_modalities(inputs)
        self.raw_feat = nn.ParameterDict({m: nn.Parameter(f.detach().clone()) for m, f in modalities.items()})
        self.feat_proj = nn.ModuleDict({m: nn.Linear(f.shape[1], embedding_size) for m, f in modalities.items()})
        mm_adj = to_csr(self._item_graph(modalities, knn_k, mm_image_weight))
        self.register_buffer("mm_adj", mm_adj, persistent=False)
        self.register_buffer("mm_adj_t", transpose_csr(mm_adj), persistent=False)  # for the backward pass
        self._register_user_item_graph(inputs)
        if dropout > 0 and int(self.edge_users.numel() * (1.0 - dropout)) < 1:
            raise ValueError(f"freedom dropout={dropout} keeps no edge of the {self.edge_users.numel()} train edges")

    @staticmethod
    def _item_graph(modalities: dict[str, torch.Tensor], knn_k: int, image_weight: float) -> torch.Tensor:
        graphs = {m: sym_normalize(knn_graph(f.detach(), knn_k)) for m, f in modalities.items()}
        if len(graphs) == 1:
            return next(iter(graphs.values()))
        return (image_weight * graphs["image"] + (1.0 - image_weight) * graphs["text"]).coalesce()

    def _register_user_item_graph(self, inputs: ModelInputs) -> None:
        train = inputs.train_matrix().tocoo()
        users = torch.from_numpy(train.row.astype(np.int64)).to(inputs.device)  # [E]
        items = torch.from_numpy(train.col.astype(np.int64)).to(inputs.device)  # [E]
        norm_adj = to_torch_sparse(sym_norm_bipartite_adj(train), inputs.device)
        keep_weight = bipartite_edge_norm(users, items, self.n_users, self.n_items)  # [E]
        self.register_buffer("norm_adj", norm_adj, persistent=False)
        self.register_buffer("edge_users", users, persistent=False)
        self.register_buffer("edge_items", items, persistent=False)
        self.register_buffer("edge_keep_weight", keep_weight, persistent=False)
        self.register_buffer("masked_adj", None, persistent=False)

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Degree-sensitive edge pruning: resample the training graph (vectorised, O(E log E))."""
        self.masked_adj = self.norm_adj if self.dropout <= 0 else self.sample_pruned_graph(generator)

    def sample_pruned_graph(self, generator: torch.Generator) -> torch.Tensor:
        """Keep int(E (1 - dropout)) distinct edges drawn with probability ~ 1/sqrt(d_u d_i), renormalised."""
        n_keep = int(self.edge_keep_weight.numel() * (1.0 - self.dropout))
        weights = self.edge_keep_weight.to(generator.device)  # sample where the generator lives
        kept = torch.multinomial(weights, n_keep, replacement=False, generator=generator).to(self.edge_users.device)
        users, items = self.edge_users[kept], self.edge_items[kept]  # [n_keep]
        values = bipartite_edge_norm(users, items, self.n_users, self.n_items)
        return symmetric_bipartite(users, items, values, self.n_users, self.n_items)

    def _train_graph(self) -> torch.Tensor:
        if not self.training:
            return self.norm_adj
        if self.masked_adj is None:
            raise RuntimeError("FREEDOM samples its training graph in on_epoch_start(epoch, generator); call it first")
        return self.masked_adj

    def propagate(self) -> Embeddings:
        item_graph_emb = self.item_emb
        for _ in range(self.n_mm_layers):
            item_graph_emb = sparse_matmul(self.mm_adj, item_graph_emb, self.mm_adj_t)  # [n_items, d]
        ego = torch.cat([self.user_emb, self.item_emb], dim=0)  # [U+I, d]
        out = propagate_mean(self._train_graph(), ego, self.n_ui_layers)  # [U+I, d]
        return Embeddings(users=out[: self.n_users], items=out[self.n_users :] + item_graph_emb)

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]  # [B, d]
        per_sample = _bpr_logsigmoid(u, emb.items[pos], emb.items[neg])  # [B]
        for modality, proj in self.feat_proj.items():
            feat = self.raw_feat[modality]
            per_sample = per_sample + self.reg_weight * _bpr_logsigmoid(u, proj(feat[pos]), proj(feat[neg]))
        return per_sample


def _bpr_logsigmoid(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """[B] -log sigmoid(u.pos - u.neg): the BPR form FREEDOM's own bpr_loss uses (no 1e-10)."""
    return -F.logsigmoid((u * pos).sum(-1) - (u * neg).sum(-1))
