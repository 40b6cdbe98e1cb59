"""MGCN (P. Yu, Z. Tan, G. Lu & B.-K. Bao, "Multi-View Graph Convolutional Network for Multimedia
Recommendation", ACM MM 2023), as MMRec's `MGCN` (src/models/mgcn.py, src/configs/model/MGCN.yaml).

- Behaviour-guided purifier: per modality m, the (trainable) raw features are projected to
  `embedding_size` and gate the item ID embeddings: x_m = e_id * sigmoid(W_g,m (W_m f_m + b_m) + b_g,m).
- User-item view: LightGCN on D^-1/2 A D^-1/2 (`n_ui_layers` layers, mean of layers 0..L) of
  the user and item ID embeddings: the *content* embeddings.
- Item-item view: per modality a kNN graph of the raw features (cosine top-`knn_k`, the item
  itself included, weighted by the similarities, D^-1/2 S D^-1/2 with row-sum degrees), built
  once at construction and frozen; the purified item features are propagated `n_layers` times
  on it, and a user is the normalised sum of its items, R = D_u^-1/2 A D_i^-1/2 (the
  user-item block of the same normalised graph).
- Behaviour-aware fuser: attention weights softmax_m(q^T tanh(W e_m + b)) give the
  modality-common part c = sum_m w_m e_m; each modality's specific part (e_m - c) is gated by
  the user's/item's preference sigmoid(W_p,m content + b_p,m); side = (c + sum_m specific_m) / 3;
  final = content + side, score = user . item.

Loss, MMRec's calculate_loss: BPR (-log sigmoid) on the final embeddings, plus `reg_weight` x
half the squared norms of the batch's final user / positive / negative vectors over the batch
size, plus `cl_loss` x the InfoNCE (cosine similarities / 0.2, in-batch negatives) between the
side and content views of the batch's positive items plus the same for the batch's users.
Every term is one row per batch triple, so `sample_losses` returns their sum per row and
`regularization` is zero. Nothing is random in the forward pass, so the training forward is
the evaluation forward.

Differences from MMRec, none changing the model:
- sparse instead of dense: MMRec's build_sim makes a dense n_items x n_items cosine matrix per
  modality and takes its top-k (then keeps a sparse result). Here the top-k comes from a
  blocked exact search (`graph.knn_graph`, O(block x n) memory) and the normalisation acts on
  the edge list (`graph.sym_normalize`). Blocked products may round differently from one
  dense product, which could only reorder exact near-ties of the top-k;
- propagation: torch CSR products with a one-product backward (`graph.sparse_matmul`) instead
  of COO `torch.sparse.mm`; the kNN graphs (not symmetric) keep their transposes for the
  backward pass. The LightGCN of the content view runs on the two user-item blocks R and R^T
  (the graph has no self-loops, so every layer hops between users and items): the same sums
  as products with the whole (users + items) matrix, a running sum for the mean of layers;
- the graphs are computed at construction, not read from MMRec's cache files
  `image_adj_{k}_True.pt` / `text_adj_{k}_True.pt` (the same values);
- the InfoNCE row -log(exp(s_bb / t) / sum_j exp(s_bj / t)) is computed as the equal
  logsumexp_j(s_bj / t) - s_bb / t (no overflow of exp); MMRec takes its batch mean, the caller
  takes it here (`sample_losses` returns the rows, so a denoising plug-in can weight them);
- the regulariser divides by the actual batch size; MMRec divides by `train_batch_size`,
  which differs only on the last, shorter batch of an epoch;
- numerical guards: the cosine similarity of a zero feature row is 0 (F.normalize) where
  MMRec divides 0 by 0, and degrees get + 1e-7 (graph.sym_normalize and
  graph.sym_norm_bipartite_adj) where MMRec maps 1/0 to 0: a relative change below 1e-7 for
  every node with an edge (every item is its own neighbour with similarity 1);
- duplicate train interactions count once (ModelInputs.train_matrix); MMRec's data has none;
- the temperature 0.2, hard-coded in MMRec's calculate_loss, is the setting `temperature`
  (default 0.2; MMRec's `self.tau = 0.5` is never read). The yaml's `lambda_coeff` (0.9) is read
  by no code of MMRec's MGCN and has no setting;
- the modality attention stacks the views text first (`present_modalities`); MMRec concatenates
  [image, text]. A softmax and a weighted sum do not depend on the order (up to rounding);
- one modality only (MMRec's forward needs both and fails otherwise): the attention has one
  modality, so its weight is exactly 1, the common part is that modality's view and its
  specific part e_m - c is exactly zero. The fuser then returns c / 2, MMRec's
  (c + sum_m specific_m) / 3 read as the mean over its |M| + 1 terms; the attention query and
  the preference gate, whose output would always be multiplied by zero, are not built.

Where MMRec differs from the authors' code (demonph10/MGCN, on which MMRec's is based;
followed: MMRec): the authors' softmax of the modality attention runs over dim 0, i.e. over
all users and items per modality, MMRec's over the modalities of each node, as the paper's
attention describes; the authors build an unused `query_fusion` layer. The authors' yaml sets
cl_loss 0.01 (a value of MMRec's grid); the default here is MMRec's first grid value, 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import (
    knn_graph,
    sparse_matmul,
    sym_norm_bipartite_adj,
    sym_normalize,
    to_csr,
    to_torch_sparse,
    transpose_csr,
)
from guider.models.modalities import present_modalities
from guider.models.registry import register


@dataclass(frozen=True)
class MGCNConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec MGCN.yaml
    n_ui_layers: int = setting(2, ge=0)  # MMRec MGCN.yaml: LightGCN layers of the user-item view
    n_layers: int = setting(1, ge=0)  # MMRec MGCN.yaml: propagations on the item-item graphs
    knn_k: int = setting(10, ge=1)  # MMRec MGCN.yaml
    reg_weight: float = setting(1e-4, ge=0)  # MMRec MGCN.yaml
    # MMRec MGCN.yaml grid [0.001, 0.01, 0.1]: first value (MMRec publishes no winner; the authors' yaml: 0.01)
    cl_loss: float = setting(0.001, ge=0)
    temperature: float = setting(0.2, gt=0)  # MMRec mgcn.py calculate_loss hard-codes InfoNCE(..., 0.2)

    grid = {"model.cl_loss": (0.001, 0.01, 0.1)}  # MMRec MGCN.yaml hyper_parameters
    train_defaults = {"lr_scheduler": [0.96, 50.0]}  # MMRec MGCN.yaml learning_rate_scheduler [0.96, 50]


@register("mgcn")
class MGCN(Recommender):
    display_name = "MGCN"
    Config = MGCNConfig
    uses_features = True
    train_propagate_equals_eval = True  # no dropout, no resampled graph

    def __init__(self, inputs: ModelInputs, config: MGCNConfig):
        super().__init__(inputs, config)
        d = config.embedding_size
        self.n_ui_layers, self.n_layers = config.n_ui_layers, config.n_layers
        self.reg_weight, self.cl_weight, self.temperature = config.reg_weight, config.cl_loss, config.temperature
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        modalities = present_modalities(inputs)
        self.modalities = list(modalities)
        # Trainable raw features: MMRec loads them with from_pretrained(freeze=False).
        self.raw_feat = nn.ParameterDict({m: nn.Parameter(f.detach().clone()) for m, f in modalities.items()})
        self.feat_proj = nn.ModuleDict(
            {m: nn.Linear(f.shape[1], d) for m, f in modalities.items()}
        )  # image_trs, text_trs
        self.purifier_gate = nn.ModuleDict({m: nn.Linear(d, d) for m in modalities})  # MMRec gate_v, gate_t
        if len(modalities) > 1:
            self.query = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1, bias=False))  # query_common
            self.prefer_gate = nn.ModuleDict({m: nn.Linear(d, d) for m in modalities})  # gate_*_prefer
        self._register_item_graphs(modalities, config.knn_k)
        self._register_user_item_blocks(inputs)

    def _register_item_graphs(self, modalities: dict[str, torch.Tensor], knn_k: int) -> None:
        """Each modality's frozen kNN graph of the raw features (similarity-weighted, normalised) and its transpose."""
        for m, feat in modalities.items():
            with torch.no_grad():
                adj = to_csr(sym_normalize(knn_graph(feat.detach(), knn_k, weighted=True)))  # [I, I]
            self.register_buffer(f"item_adj_{m}", adj, persistent=False)
            self.register_buffer(f"item_adj_{m}_t", transpose_csr(adj), persistent=False)

    def _register_user_item_blocks(self, inputs: ModelInputs) -> None:
        """R = D_u^-1/2 A D_i^-1/2 [U, I] (MMRec's self.R) and R^T: the two blocks of the normalised graph."""
        norm_adj = sym_norm_bipartite_adj(inputs.train_matrix()).tocsr()
        user_item = norm_adj[: self.n_users, self.n_users :]
        self.register_buffer("user_item", to_torch_sparse(user_item, inputs.device), persistent=False)
        self.register_buffer("item_user", to_torch_sparse(user_item.T, inputs.device), persistent=False)

    # --- forward ------------------------------------------------------------------------------
    def propagate(self) -> Embeddings:
        content_users, content_items = self.content_view()  # [U, d], [I, d]
        views = {m: self.modality_view(m) for m in self.modalities}  # each ([U, d], [I, d])
        content = torch.cat([content_users, content_items], dim=0)  # [U+I, d]
        side = self.fuse({m: torch.cat(v, dim=0) for m, v in views.items()}, content)  # [U+I, d]
        final = content + side  # [U+I, d]
        return Embeddings(
            users=final[: self.n_users],
            items=final[self.n_users :],
            extras={"side": side, "content": content},  # [U+I, d] each: the two views of the InfoNCE
        )

    def purified_items(self, modality: str) -> torch.Tensor:
        """[I, d] item ID embeddings gated by the modality's projected features (behaviour-guided purifier)."""
        feats = self.feat_proj[modality](self.raw_feat[modality])  # [I, d]
        return self.item_emb * torch.sigmoid(self.purifier_gate[modality](feats))

    def content_view(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([U, d], [I, d]) LightGCN mean of layers 0..L of the ID embeddings on the user-item graph."""
        users, items = self.user_emb, self.item_emb
        sum_users, sum_items = users, items
        for _ in range(self.n_ui_layers):
            users, items = self._to_users(items), self._to_items(users)
            sum_users, sum_items = sum_users + users, sum_items + items
        return sum_users / (self.n_ui_layers + 1), sum_items / (self.n_ui_layers + 1)

    def modality_view(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """([U, d], [I, d]) purified items propagated on the modality's item graph; users = R @ items."""
        items = self.purified_items(modality)  # [I, d]
        adj, adj_t = getattr(self, f"item_adj_{modality}"), getattr(self, f"item_adj_{modality}_t")
        for _ in range(self.n_layers):
            items = sparse_matmul(adj, items, adj_t)  # [I, d]
        return self._to_users(items), items

    def fuse(self, views: dict[str, torch.Tensor], content: torch.Tensor) -> torch.Tensor:
        """[N, d] side embeddings of the behaviour-aware fuser: (common + sum_m specific_m) / (|M| + 1).

        With one modality the attention weight is 1, the common part is that view and its specific
        part is exactly zero, so only common / 2 remains."""
        if len(views) == 1:
            return next(iter(views.values())) / 2
        stacked = torch.stack(list(views.values()), dim=1)  # [N, M, d]
        weights = torch.softmax(self.query(stacked).squeeze(-1), dim=1)  # [N, M]
        common = (weights.unsqueeze(-1) * stacked).sum(dim=1)  # [N, d]
        side = common
        for m, view in views.items():
            side = side + torch.sigmoid(self.prefer_gate[m](content)) * (view - common)  # specific part of m
        return side / (len(views) + 1)

    def _to_users(self, items: torch.Tensor) -> torch.Tensor:
        """[U, d] R @ items."""
        return sparse_matmul(self.user_item, items, self.item_user)

    def _to_items(self, users: torch.Tensor) -> torch.Tensor:
        """[I, d] R^T @ users."""
        return sparse_matmul(self.item_user, users, self.user_item)

    # --- loss ---------------------------------------------------------------------------------
    def sample_losses(self, emb, users, pos, neg):
        """[B] BPR + reg_weight x half squared norms + cl_loss x (item InfoNCE row + user InfoNCE row)."""
        u, p, n = emb.users[users], emb.items[pos], emb.items[neg]  # [B, d] each
        bpr = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1))  # [B]
        squared_norms = 0.5 * (u.pow(2).sum(-1) + p.pow(2).sum(-1) + n.pow(2).sum(-1))  # [B]
        side, content = emb.extras["side"], emb.extras["content"]  # [U+I, d]
        item_rows, user_rows = pos + self.n_users, users
        contrast = infonce_rows(side[item_rows], content[item_rows], self.temperature) + infonce_rows(
            side[user_rows], content[user_rows], self.temperature
        )  # [B]
        return bpr + self.reg_weight * squared_norms + self.cl_weight * contrast


def infonce_rows(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B] -log(exp(s_bb / t) / sum_j exp(s_bj / t)), s the cosine similarities of view1 [B, d]
    with view2 [B, d] (MMRec's MGCN.InfoNCE before its mean)."""
    logits = F.normalize(view1, dim=1) @ F.normalize(view2, dim=1).T / temperature  # [B, B]
    return torch.logsumexp(logits, dim=1) - logits.diagonal()
