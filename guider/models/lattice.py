"""LATTICE (Zhang, Zhu, Liu, Wu, Wang & Wang, "Mining Latent Structures for Multimedia
Recommendation", ACM MM 2021), as MMRec's `LATTICE`.

Per modality m an item-item kNN graph is mined twice: once from the raw features (the
*original* graph, fixed, D^-1/2 S D^-1/2 normalised) and once from trainable linear
projections of the (trainable) raw features (the *learned* graph). Both keep the cosine
similarities of each item's `knn_k` nearest items (the item itself included). The learned
graphs are mixed with softmax weights of a trainable `modal_weight`, the mix is normalised,
and the item graph is

    item_adj = (1 - lambda_coeff) * learned + lambda_coeff * sum_m softmax(w)_m original_m.

Item ID embeddings propagated `n_layers` times on it are L2-normalised and added to the items
of the CF model: LightGCN (`n_ui_layers` layers, mean of layers 0..L) on MMRec's LATTICE
user-item graph D^-1 (A + I) (row-normalised, with self-loops), or `mf` (the ID embeddings).
Loss: BPR (-log sigmoid) plus `reg_weight` x half the squared norms of the batch's final
user / positive / negative vectors over the batch size, both per triple (`sample_losses`).

When the graph is learned (MMRec's `build_item_graph`): the first training forward after
`on_epoch_start` (MMRec's `pre_epoch_processing`) builds it with autograd, so that batch's
gradient reaches the projections, the raw features and `modal_weight` through the selected
similarities and the normalisation; the later batches of the epoch reuse its values detached
(those parameters get no gradient then). Evaluation builds it afresh from the current
parameters (MMRec's `full_sort_predict` passes `build_item_graph=True`), so a training
forward after the first batch differs from an evaluation forward.

Differences from MMRec, none changing the model:
- sparse instead of dense: MMRec builds dense n x n similarity, kNN and normalised matrices
  and multiplies a dense item graph every batch. Here the top-k indices come from a blocked
  exact search without autograd (`graph.knn_neighbours`), then only the n x k selected cosine
  similarities are recomputed with autograd: the same values and the same gradient
  (torch.topk's gradient reaches only the selected entries), O(n k) memory. The normalisation
  and the mix act on edge lists; propagation is a CSR product whose backward also returns the
  gradient of the stored values (a sampled dense product, torch.sparse.sampled_addmm).
  Blocked products may round differently from one dense product, which could only reorder
  exact near-ties of the top-k;
- the projections are computed only when the graph is built; MMRec computes them on every
  batch and discards them (no gradient reaches them on those batches), so nothing changes;
- evaluation builds the graph once per forward (MMRec: once per batch of evaluated users, the
  same graph each time) and leaves the training graph alone (MMRec overwrites `item_adj`, which
  the next epoch rebuilds before any use);
- the original graphs are computed at construction, not read from MMRec's cache files
  `image_adj_{k}.pt` / `text_adj_{k}.pt` (the same values);
- numerical guards: cosine similarity of a zero feature row is 0 (F.normalize) where MMRec
  divides 0 by 0, and a zero degree gets 0 without a NaN gradient (MMRec sets inf to 0 in
  the forward only); neither happens with real features (every item is its own neighbour
  with similarity 1);
- the regulariser divides by the actual batch size; MMRec divides by `train_batch_size`,
  which differs only on the last, shorter batch of an epoch;
- `modal_weight` exists only when both modalities are present (MMRec creates it always but
  never uses it with one modality); its entries are [image, text] as in MMRec;
- MMRec's `weight_size` [64, 64] becomes `n_ui_layers` = 2: cf_model lightgcn (the yaml's)
  and mf use only its length. cf_model ngcf (weight_size widths, `mess_dropout`) is not
  ported, so `mess_dropout` (ngcf only) has no setting;
- duplicate train interactions count once (ModelInputs.train_matrix); MMRec's data has none;
- the LightGCN mean of layers is a running sum (the same value up to rounding).

Where MMRec differs from the paper, this follows MMRec (whose LATTICE code is the authors'):
the paper (as we read its equations) normalises each modality's learned graph, applies the skip
connection per modality and then aggregates the modalities; MMRec sums the unnormalised
learned kNN graphs with the softmax weights, normalises that sum once, and applies the skip
connection to the weighted sum of the separately normalised original graphs. The paper
plugs the item graph into LightGCN; MMRec's user-item graph is NGCF's D^-1 (A + I), not
LightGCN's D^-1/2 A D^-1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import knn_neighbours, sparse_matmul, to_torch_sparse, transpose_csr
from guider.models.modalities import present_modalities
from guider.models.registry import register

MODAL_WEIGHT_ORDER = ("image", "text")  # MMRec: weight[0] image, weight[1] text


@dataclass(frozen=True)
class LATTICEConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec LATTICE.yaml
    feat_embed_dim: int = setting(64, ge=1)  # MMRec LATTICE.yaml: width of the projections the graph is learned from
    # MMRec LATTICE.yaml weight_size [64, 64]: lightgcn/mf use only its length (user-item layers)
    n_ui_layers: int = setting(2, ge=0)
    n_layers: int = setting(1, ge=0)  # MMRec LATTICE.yaml: propagations on the item graph
    knn_k: int = setting(10, ge=1)  # MMRec LATTICE.yaml
    lambda_coeff: float = setting(0.9, ge=0, le=1)  # MMRec LATTICE.yaml: weight of the original graph
    cf_model: str = setting("lightgcn", choices=("lightgcn", "mf"))  # MMRec LATTICE.yaml (ngcf not ported)
    # MMRec LATTICE.yaml grid [0, 1e-5, 1e-4, 1e-3]: first value (MMRec publishes no winner);
    # mess_dropout [0.1, 0.1]: used by cf_model ngcf only
    reg_weight: float = setting(0.0, ge=0)

    grid = {"model.reg_weight": (0.0, 1e-5, 1e-4, 1e-3), "train.lr": (1e-4, 5e-4, 1e-3, 5e-3)}  # MMRec LATTICE.yaml
    train_defaults = {"lr_scheduler": [0.96, 50.0]}  # MMRec LATTICE.yaml learning_rate_scheduler [0.96, 50]


@dataclass
class ItemGraph:
    """A sparse item graph: CSR `adj` [n, n] and its transpose; `values` are adj's stored
    values (CSR order), with autograd when the graph was just learned."""

    adj: torch.Tensor
    adj_t: torch.Tensor
    values: torch.Tensor  # [nnz]

    def detached(self) -> ItemGraph:
        return ItemGraph(self.adj, self.adj_t, self.values.detach())

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """[n, d] adj @ x; the gradient reaches `values` too when they require it."""
        if self.values.requires_grad:
            return _ValuedSparseMatmul.apply(self.values, x, self.detached())
        return sparse_matmul(self.adj, x, self.adj_t)


class _ValuedSparseMatmul(torch.autograd.Function):
    """adj @ x with gradients to adj's stored values and to x."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, x: torch.Tensor, graph: ItemGraph) -> torch.Tensor:
        ctx.graph = graph
        ctx.save_for_backward(x)
        return graph.adj @ x

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        graph: ItemGraph = ctx.graph
        grad_values = grad_x = None
        if ctx.needs_input_grad[0]:
            # d out[r] . x[c] per stored entry (r, c), in CSR order: a sampled dense product
            grad_values = torch.sparse.sampled_addmm(graph.adj, grad_out, x.T, beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_x = graph.adj_t @ grad_out
        return grad_values, grad_x, None


def knn_edges(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, k] neighbours, [n, k] their cosine similarities): MMRec's build_sim + top-k, the
    indices found without autograd, the similarities recomputed with it (as differentiable
    as MMRec's dense ones, O(n k d) memory)."""
    with torch.no_grad():
        neighbours, _ = knn_neighbours(features.detach(), k)  # [n, k], the item itself included
    unit = F.normalize(features, dim=-1)  # [n, f]
    sims = torch.einsum("nf,nkf->nk", unit, unit[neighbours])  # [n, k]
    return neighbours, sims


def normalized_laplacian(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """[E] values of D^-1/2 A D^-1/2 (D = row sums; 0 where a degree is 0), MMRec's
    compute_normalized_laplacian on an edge list (duplicate edges count as their sum)."""
    degree = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, rows, values)  # [n]
    empty = degree == 0
    inv_sqrt = torch.where(empty, 0.0, torch.where(empty, 1.0, degree).pow(-0.5))  # [n]
    return inv_sqrt[rows] * values * inv_sqrt[cols]


def sum_into_graph(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> ItemGraph:
    """The [n, n] sparse graph holding the sum of the given entries (duplicates merged)."""
    keys, slot = torch.unique(rows * n + cols, return_inverse=True)  # sorted: CSR order
    merged = torch.zeros(keys.numel(), dtype=values.dtype, device=values.device).index_add(0, slot, values)
    crow = torch.zeros(n + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(keys // n, minlength=n), 0)
    adj = torch.sparse_csr_tensor(crow, keys % n, merged.detach(), (n, n), check_invariants=False)
    return ItemGraph(adj, transpose_csr(adj), merged)


def lattice_user_item_adj(train: sp.csr_matrix) -> sp.csr_matrix:
    """[(U+I), (U+I)] D^-1 (A + I), D the row sums of A + I: MMRec's LATTICE get_adj_mat."""
    n = sum(train.shape)
    adj = sp.bmat([[None, train], [train.T, None]], format="csr").astype(np.float64) + sp.identity(n, format="csr")
    degree = np.asarray(adj.sum(axis=1)).ravel()  # >= 1 (the self-loop)
    return (sp.diags(1.0 / degree) @ adj).tocsr().astype(np.float32)


@register("lattice")
class LATTICE(Recommender):
    display_name = "LATTICE"
    Config = LATTICEConfig
    uses_features = True
    # training reuses the graph learned at the epoch's first batch; evaluation rebuilds it
    train_propagate_equals_eval = False

    def __init__(self, inputs: ModelInputs, config: LATTICEConfig):
        super().__init__(inputs, config)
        self.knn_k, self.n_layers, self.n_ui_layers = config.knn_k, config.n_layers, config.n_ui_layers
        self.lambda_coeff, self.cf_model, self.reg_weight = config.lambda_coeff, config.cf_model, config.reg_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, config.embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, config.embedding_size)))
        modalities = present_modalities(inputs)
        # Trainable raw features: MMRec loads them with from_pretrained(freeze=False).
        self.raw_feat = nn.ParameterDict({m: nn.Parameter(f.detach().clone()) for m, f in modalities.items()})
        self.feat_proj = nn.ModuleDict({m: nn.Linear(f.shape[1], config.feat_embed_dim) for m, f in modalities.items()})
        if len(modalities) == 2:
            self.modal_weight = nn.Parameter(torch.tensor([0.5, 0.5], device=inputs.device))  # [image, text]
        rows = torch.arange(self.n_items, device=inputs.device).repeat_interleave(self.knn_k)  # [n k]
        self.register_buffer("knn_rows", rows, persistent=False)
        self._register_original_graphs(modalities)
        adj = to_torch_sparse(lattice_user_item_adj(inputs.train_matrix()), inputs.device)
        self.register_buffer("norm_adj", adj, persistent=False)
        self.register_buffer("norm_adj_t", transpose_csr(adj), persistent=False)  # D^-1 (A+I) is not symmetric
        self.learned_graph: ItemGraph | None = None  # the epoch's graph, detached (training only)
        self.build_item_graph = True  # MMRec: True at construction and at every epoch start

    def _register_original_graphs(self, modalities: dict[str, torch.Tensor]) -> None:
        """Each modality's normalised kNN graph of the raw features: [n k] columns and values."""
        for m, feat in modalities.items():
            with torch.no_grad():
                neighbours, sims = knn_neighbours(feat, self.knn_k)  # [n, k] each; no gather of wide rows
                values = normalized_laplacian(self.knn_rows, neighbours.reshape(-1), sims.reshape(-1), self.n_items)
            self.register_buffer(f"original_cols_{m}", neighbours.reshape(-1), persistent=False)
            self.register_buffer(f"original_values_{m}", values, persistent=False)

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """MMRec's pre_epoch_processing: the next training forward learns the graph again."""
        self.build_item_graph = True

    def modality_weights(self) -> dict[str, torch.Tensor | float]:
        """Softmax of modal_weight per modality (1 for a single modality, as MMRec)."""
        if len(self.raw_feat) == 1:
            return {m: 1.0 for m in self.raw_feat}
        weights = torch.softmax(self.modal_weight, dim=0)  # [2]
        return {m: weights[i] for i, m in enumerate(MODAL_WEIGHT_ORDER)}

    def build_graph(self) -> ItemGraph:
        """item_adj = (1 - lambda) L(sum_m w_m kNN(proj_m(f_m))) + lambda sum_m w_m original_m,
        from the current parameters (with autograd where it is enabled)."""
        weights = self.modality_weights()
        learned_cols, learned_values, original_cols, original_values = [], [], [], []
        for m, feat in self.raw_feat.items():
            neighbours, sims = knn_edges(self.feat_proj[m](feat), self.knn_k)  # [n, k] each
            learned_cols.append(neighbours.reshape(-1))
            learned_values.append(weights[m] * sims.reshape(-1))
            original_cols.append(getattr(self, f"original_cols_{m}"))
            original_values.append(weights[m] * getattr(self, f"original_values_{m}"))
        rows = self.knn_rows.repeat(len(learned_cols))  # [M n k]
        learned = normalized_laplacian(rows, torch.cat(learned_cols), torch.cat(learned_values), self.n_items)
        values = torch.cat([(1.0 - self.lambda_coeff) * learned, self.lambda_coeff * torch.cat(original_values)])
        cols = torch.cat(learned_cols + original_cols)  # [2 M n k]
        return sum_into_graph(torch.cat([rows, rows]), cols, values, self.n_items)

    def item_graph(self) -> ItemGraph:
        """Eval: built now; training: learned (with autograd) at the epoch's first forward, then reused."""
        if not self.training:
            return self.build_graph()
        if self.build_item_graph or self.learned_graph is None:
            graph = self.build_graph()
            self.learned_graph, self.build_item_graph = graph.detached(), False
            return graph
        return self.learned_graph

    def propagate(self) -> Embeddings:
        graph = self.item_graph()
        h = self.item_emb
        for _ in range(self.n_layers):
            h = graph.matmul(h)  # [n_items, d]
        users, items = self._collaborative_embeddings()
        return Embeddings(users=users, items=items + F.normalize(h, p=2, dim=1))

    def _collaborative_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """([U, d], [I, d]) of the CF model: LightGCN's mean of layers on D^-1 (A + I), or MF."""
        if self.cf_model == "mf":
            return self.user_emb, self.item_emb
        x = torch.cat([self.user_emb, self.item_emb], dim=0)  # [U+I, d]
        total = x
        for _ in range(self.n_ui_layers):
            x = sparse_matmul(self.norm_adj, x, self.norm_adj_t)
            total = total + x
        out = total / (self.n_ui_layers + 1)
        return out[: self.n_users], out[self.n_users :]

    def sample_losses(self, emb, users, pos, neg):
        u, p, n = emb.users[users], emb.items[pos], emb.items[neg]  # [B, d] each
        bpr = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1))  # [B]
        squared_norms = 0.5 * (u.pow(2).sum(-1) + p.pow(2).sum(-1) + n.pow(2).sum(-1))  # [B]
        return bpr + self.reg_weight * squared_norms
