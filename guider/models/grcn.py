"""GRCN (Wei, Wang, Nie, He & Chua, "Graph-Refined Convolutional Network for Multimedia
Recommendation with Implicit Feedback", ACM MM 2020), as MMRec's `GRCN`.

The user-item graph is refined per modality, then convolved:

- content (per modality m, MMRec's `CGCN`): item content f_i = normalize(leaky_relu(W_m x_i + b_m))
  and user preference p_u = normalize(P_m[u]) (both `latent_embedding` wide). Each train edge
  gets the affinity s_ui = <p_u, f_i>, turned into two weights by PyG's softmax: over the
  users of item i (weight of the message u -> i) and over the items of user u (message
  i -> u). The modality's representation is one attention convolution:
  users p_u + sum_i a_ui f_i, items f_i + sum_u a_iu p_u;
- refined graph (MMRec's weight_mode 'confid'): each directed edge's weight is
  max_m(a_m x confidence_m(sender)), a trainable per-node, per-modality confidence, then
  pruned with relu (negative weights drop the edge);
- ID GCN (MMRec's `EGCN`): normalised ID embeddings x propagated twice on the refined
  weighted graph A: x + A x + A A x (sum aggregation, no activation);
- the representation concatenates the ID part and every modality's part (fusion 'concat');
  scores are dot products.

Loss (MMRec's calculate_loss): BPR -log sigmoid(y_ui - y_uj) per triple (`sample_losses`)
plus, as the regulariser, reg_weight x [mean over the batch's (user, item) rows of the
squared ID embeddings, mean of the squared image preferences of *all* users (image only),
and per modality the mean of the batch users' squared preferences].

Where MMRec differs from the paper (we follow MMRec):
- routing: the paper refines each user's preference from its items' content over
  `num_routing` iterations; MMRec (like the authors' code) runs them on the one-directional
  edge list users -> items, where PyG sums the messages at the items, so the users' update
  is exactly zero and the iterations only re-normalise unit vectors: a no-op (n_layers, its
  num_routing, changes nothing);
- the ID GCN has 2 layers whatever n_layers says;
- the regulariser's all-user image-preference term is MMRec's (not in the authors' code).

Differences from MMRec, none changing the model:
- message passing with torch CSR products over the fixed edge list (two layouts, rows =
  users and rows = items, int32 indices) with explicit backward passes (to the edge weights
  by a sampled dense product, to the node features by the transposed product), edge
  affinities by a sampled dense product, and scatter/index_add softmaxes, instead of
  torch_geometric: the same sums in another order;
- the routing is not run: it would compute item-side aggregations MMRec discards and
  re-normalise already normalised preferences (a change within rounding);
- the softmax's per-group maximum is detached (as PyG >= 2.3; the shift cancels);
- BPR as -logsigmoid: equal to MMRec's -log(sigmoid) wherever that is finite;
- evaluation scores with the current parameters; MMRec's full_sort_predict reuses the
  representation of the epoch's last training batch (computed before its optimiser step);
- text features only: MMRec fails there (a typo leaves its content representation unset);
  here the text part is the content representation, as MMRec does with image only;
- duplicated train interactions are one edge (MMRec's COO would keep parallel edges; its
  datasets have none); the edges are ordered by user, then item (only the summation order);
- modalities are ordered image, text as in MMRec (columns of the confidence, of the output);
- MMRec's hard-coded weight_mode, fusion_mode and pruning are settings with its values
  (its 'mean' fusion references an undefined variable and is not offered); its dead code
  (dropout_adj with p = 0, the unused confidence regulariser, is_word) is left out; the
  regulariser's means are taken over the batch rows without repeat_interleave (same value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.modalities import present_modalities
from guider.models.registry import register

MODALITY_ORDER = ("image", "text")  # MMRec builds v_gcn before t_gcn


@dataclass(frozen=True)
class GRCNConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec GRCN.yaml: ID embedding width (dim_E)
    latent_embedding: int = setting(64, ge=1)  # MMRec GRCN.yaml: preference/content width per modality (dim_C)
    # MMRec GRCN.yaml: MMRec's num_routing, which changes nothing in its code (see the module
    # docstring); the ID GCN always has 2 layers
    n_layers: int = setting(3, ge=0)
    reg_weight: float = setting(0.1, ge=0)  # MMRec GRCN.yaml grid [0.1, 0.01, 0.001, 1e-4, 1e-5]: first value
    weight_mode: str = setting("confid", choices=("confid", "max", "mean"))  # MMRec grcn.py (hard-coded)
    fusion_mode: str = setting("concat", choices=("concat", "id"))  # MMRec grcn.py (hard-coded)
    pruning: bool = setting(True)  # MMRec grcn.py (hard-coded): relu on the refined edge weights

    grid = {  # MMRec GRCN.yaml (train.lr stays MMRec overall.yaml's 0.001, which is in the grid)
        "model.reg_weight": (0.1, 0.01, 0.001, 1e-4, 1e-5),
        "train.lr": (1.0, 0.1, 0.01, 0.001, 1e-4),
    }


class BipartiteEdges(nn.Module):
    """The train edges (u, i), ordered by user then item, and their two CSR layouts:
    rows = users (columns items) and rows = items (columns users). Edge values are always
    given in the edge order; `to_users`, `to_items` and `dot` are differentiable."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, device: torch.device):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        order = np.lexsort((items, users))
        users_t = torch.from_numpy(users[order].astype(np.int64)).to(device)  # [E]
        items_t = torch.from_numpy(items[order].astype(np.int64)).to(device)  # [E]
        by_item = torch.argsort(items_t, stable=True)  # [E] edge order -> item-major order
        # int32 CSR indices where they fit: MKL's CSR @ dense is ~1.7x faster with them on CPU
        index = torch.int32 if max(len(order), n_users, n_items) < 2**31 - 1 else torch.int64
        self.register_buffer("users", users_t, persistent=False)
        self.register_buffer("items", items_t, persistent=False)
        self.register_buffer("by_item", by_item, persistent=False)
        self.register_buffer("user_crow", _crow(users_t, n_users).to(index), persistent=False)
        self.register_buffer("user_cols", items_t.to(index), persistent=False)
        self.register_buffer("item_crow", _crow(items_t, n_items).to(index), persistent=False)
        self.register_buffer("item_cols", users_t[by_item].to(index), persistent=False)

    def user_rows(self, values: torch.Tensor) -> torch.Tensor:
        """CSR [U, I] with `values` [E] on the edges."""
        size = (self.n_users, self.n_items)
        return torch.sparse_csr_tensor(self.user_crow, self.user_cols, values, size, check_invariants=False)

    def item_rows(self, values: torch.Tensor) -> torch.Tensor:
        """CSR [I, U] with `values` [E] on the edges."""
        size = (self.n_items, self.n_users)
        return torch.sparse_csr_tensor(
            self.item_crow, self.item_cols, values[self.by_item], size, check_invariants=False
        )

    def to_users(self, values: torch.Tensor, item_x: torch.Tensor) -> torch.Tensor:
        """[U, d] out[u] = sum over u's edges of values_e item_x[i_e]."""
        return _EdgeProduct.apply(values, item_x, self, True)

    def to_items(self, values: torch.Tensor, user_x: torch.Tensor) -> torch.Tensor:
        """[I, d] out[i] = sum over i's edges of values_e user_x[u_e]."""
        return _EdgeProduct.apply(values, user_x, self, False)

    def dot(self, user_x: torch.Tensor, item_x: torch.Tensor) -> torch.Tensor:
        """[E] <user_x[u_e], item_x[i_e]> of every edge."""
        return _EdgeDot.apply(user_x, item_x, self)

    def sampled_dot(self, user_x: torch.Tensor, item_x: torch.Tensor) -> torch.Tensor:
        """[E] <user_x[u_e], item_x[i_e]> without autograd: a sampled dense product (SDDMM),
        ~4x faster on CPU than gathering two [E, d] tensors."""
        pattern = self.user_rows(user_x.new_zeros(self.users.numel()))
        return torch.sparse.sampled_addmm(pattern, user_x, item_x.T, beta=0.0).values()


def _crow(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """CSR row pointers of sorted row indices."""
    counts = torch.bincount(rows, minlength=n_rows)  # [n_rows]
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])  # [n_rows + 1]


class _EdgeProduct(torch.autograd.Function):
    """Weighted message passing over the edges, towards users or towards items."""

    @staticmethod
    def forward(ctx, values, x, edges: BipartiteEdges, towards_users: bool):
        ctx.save_for_backward(values, x)
        ctx.edges, ctx.towards_users = edges, towards_users
        matrix = edges.user_rows(values) if towards_users else edges.item_rows(values)
        return matrix @ x  # [U or I, d]

    @staticmethod
    def backward(ctx, grad_out):
        values, x = ctx.saved_tensors
        edges, towards_users = ctx.edges, ctx.towards_users
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:  # d values_e = <d out[receiver_e], x[sender_e]>
            grad_values = edges.sampled_dot(grad_out, x) if towards_users else edges.sampled_dot(x, grad_out)
        if ctx.needs_input_grad[1]:
            transposed = edges.item_rows(values) if towards_users else edges.user_rows(values)
            grad_x = transposed @ grad_out  # [I or U, d]
        return grad_values, grad_x, None, None


class _EdgeDot(torch.autograd.Function):
    """[E] edge affinities <user_x[u], item_x[i]>; the backward is two sparse products."""

    @staticmethod
    def forward(ctx, user_x, item_x, edges: BipartiteEdges):
        ctx.save_for_backward(user_x, item_x)
        ctx.edges = edges
        return edges.sampled_dot(user_x, item_x)

    @staticmethod
    def backward(ctx, grad_out):
        user_x, item_x = ctx.saved_tensors
        edges = ctx.edges
        grad_user = edges.user_rows(grad_out) @ item_x if ctx.needs_input_grad[0] else None  # [U, d]
        grad_item = edges.item_rows(grad_out) @ user_x if ctx.needs_input_grad[1] else None  # [I, d]
        return grad_user, grad_item, None


def group_softmax(scores: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """[E] PyG's softmax of `scores` within each group: exp(s - max) / (sum exp(s - max) + 1e-16)."""
    peak = scores.new_zeros(n_groups).scatter_reduce(0, groups, scores.detach(), "amax", include_self=False)
    exp = (scores - peak[groups]).exp()  # [E]
    total = scores.new_zeros(n_groups).index_add(0, groups, exp) + 1e-16  # [n_groups]
    return exp / total[groups]


@dataclass
class ModalityOutput:
    users: torch.Tensor  # [U, C] p_u + sum_i a_ui f_i
    items: torch.Tensor  # [I, C] f_i + sum_u a_iu p_u
    to_items: torch.Tensor  # [E] softmax over each item's users (weight of the message u -> i)
    to_users: torch.Tensor  # [E] softmax over each user's items (weight of the message i -> u)


@register("grcn")
class GRCN(Recommender):
    display_name = "GRCN"
    Config = GRCNConfig
    uses_features = True

    def __init__(self, inputs: ModelInputs, config: GRCNConfig):
        super().__init__(inputs, config)
        self.reg_weight = config.reg_weight
        self.weight_mode, self.fusion_mode, self.pruning = config.weight_mode, config.fusion_mode, config.pruning
        present = present_modalities(inputs)
        self.modalities = [m for m in MODALITY_ORDER if m in present]
        dim_c = config.latent_embedding
        n_nodes = self.n_users + self.n_items
        self.id_embedding = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_nodes, config.embedding_size)))
        self.preference = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, dim_c))) for m in self.modalities}
        )
        self.feat_proj = nn.ModuleDict({m: _xavier_normal_linear(present[m].shape[1], dim_c) for m in self.modalities})
        # MMRec's model_specific_conf: one confidence per node and modality (columns image, text)
        self.confidence = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_nodes, len(self.modalities))))
        for m in self.modalities:  # frozen raw features (MMRec keeps v_feat/t_feat as plain tensors)
            self.register_buffer(f"raw_{m}", present[m].detach().float(), persistent=False)
        train = inputs.train_matrix().tocoo()
        self.edges = BipartiteEdges(train.row, train.col, self.n_users, self.n_items, inputs.device)

    # --- forward -------------------------------------------------------------------------
    def modality(self, m: str) -> ModalityOutput:
        """MMRec's CGCN for one modality: edge affinities and one attention convolution."""
        content = F.normalize(F.leaky_relu(self.feat_proj[m](getattr(self, f"raw_{m}"))))  # [I, C]
        preference = F.normalize(self.preference[m])  # [U, C] (MMRec's routing leaves it as it is)
        affinity = self.edges.dot(preference, content)  # [E]
        to_items = group_softmax(affinity, self.edges.items, self.n_items)  # [E]
        to_users = group_softmax(affinity, self.edges.users, self.n_users)  # [E]
        users = preference + self.edges.to_users(to_users, content)  # [U, C]
        items = content + self.edges.to_items(to_items, preference)  # [I, C]
        return ModalityOutput(users, items, to_items, to_users)

    def refined_weights(self, parts: list[ModalityOutput]) -> tuple[torch.Tensor, torch.Tensor]:
        """([E] weight of each message u -> i, [E] of each i -> u): the modalities combined, pruned."""
        to_items = torch.stack([p.to_items for p in parts], dim=1)  # [E, M]
        to_users = torch.stack([p.to_users for p in parts], dim=1)  # [E, M]
        if self.weight_mode == "mean":
            to_items, to_users = to_items.mean(dim=1), to_users.mean(dim=1)
        else:
            if self.weight_mode == "confid":  # scaled by the sender's confidence
                to_items = to_items * self.confidence[self.edges.users]  # [E, M]
                to_users = to_users * self.confidence[self.n_users + self.edges.items]  # [E, M]
            to_items, to_users = to_items.max(dim=1).values, to_users.max(dim=1).values
        if self.pruning:
            to_items, to_users = torch.relu(to_items), torch.relu(to_users)
        return to_items, to_users

    def id_convolution(self, to_items: torch.Tensor, to_users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MMRec's EGCN: x + A x + A A x on the refined graph, x the normalised ID embeddings."""
        x = F.normalize(self.id_embedding)  # [U+I, D]
        users, items = x[: self.n_users], x[self.n_users :]
        layer_users, layer_items = users, items
        for _ in range(2):
            layer_users, layer_items = (
                self.edges.to_users(to_users, layer_items),  # [U, D]
                self.edges.to_items(to_items, layer_users),  # [I, D]
            )
            users, items = users + layer_users, items + layer_items
        return users, items

    def propagate(self) -> Embeddings:
        parts = [self.modality(m) for m in self.modalities]
        to_items, to_users = self.refined_weights(parts)
        id_users, id_items = self.id_convolution(to_items, to_users)
        if self.fusion_mode == "id":
            users, items = id_users, id_items
        else:
            users = torch.cat([id_users] + [p.users for p in parts], dim=1)  # [U, D + M C]
            items = torch.cat([id_items] + [p.items for p in parts], dim=1)  # [I, D + M C]
        return Embeddings(users=users, items=items, extras={"to_items": to_items, "to_users": to_users})

    # --- loss ----------------------------------------------------------------------------
    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]  # [B, d]
        diff = (u * emb.items[pos]).sum(-1) - (u * emb.items[neg]).sum(-1)  # [B]
        return -F.logsigmoid(diff)

    def regularization(self, emb, users, pos, neg):
        ids = self.id_embedding
        id_users, id_pos, id_neg = ids[users], ids[self.n_users + pos], ids[self.n_users + neg]  # [B, D]
        # MMRec: mean over the 2B (user, item) rows of e_u^2 + e_i^2
        reg = id_users.pow(2).mean() + (id_pos.pow(2).mean() + id_neg.pow(2).mean()) / 2
        if "image" in self.preference:  # MMRec adds every user's image preference
            reg = reg + self.preference["image"].pow(2).mean()
        for preference in self.preference.values():
            reg = reg + preference[users].pow(2).mean()
        return self.reg_weight * reg


def _xavier_normal_linear(d_in: int, d_out: int) -> nn.Linear:
    """nn.Linear with xavier-normal weights and PyTorch's default bias, as MMRec's CGCN."""
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_normal_(layer.weight)
    return layer
