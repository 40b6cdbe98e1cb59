"""SLMRec (Z. Tao, X. Liu, Y. Xia, X. Wang, L. Yang, X. Huang & T.-S. Chua, "Self-supervised
Learning for Multimedia Recommendation", IEEE Transactions on Multimedia, 2022), as MMRec's
`SLMRec` (src/models/slmrec.py, src/configs/model/SLMRec.yaml).

Views: the item ID embeddings, and per modality a linear projection (`recdim` wide) of the
L2-normalised, frozen item features; MMRec's order is ID, image, text. Each view's items,
together with the *same* user ID embeddings, are LightGCN-propagated on the user-item graph
(`adj_type` 'pre' = D^-1/2 A D^-1/2, degrees + 1e-8; `layer_num` layers, mean of layers
0..L). The views of a node are concatenated (`mm_fusion_mode` 'concat') and mapped back to
`recdim` by one linear layer for users and another for items; score = user . item.

Loss of a batch of (user, positive) pairs, MMRec's calculate_loss:
- main: in-batch softmax (InfoNCE) over the cosine similarities of every batch user with every
  batch positive, temperature `temp`, the user's own positive the target; the sampled
  negatives are never read (`needs_negatives = False`);
- plus `ssl_alpha` x the `ssl_task` 'FAC' ("fine and coarse") cross-modal task on the batch's
  positive items, taken from the propagated views *before* fusion: the ID view (head g_i_iv)
  against the image view (head g_v_iv) in a fine space, then the ID projection mapped on
  (g_iv_iva, then g_iva_ivat to recdim // 2) against the text view (g_t_ivat) in a coarse
  space; each an InfoNCE over in-batch items on raw dot products (no normalisation),
  temperature `ssl_temp`.
Every term is a cross-entropy row per batch pair, so `sample_losses` returns their sum per row
and `regularization` is zero. There is no other regulariser: MMRec's yaml lists `reg` in its
grid but no code reads it (nor the authors' code); MMRec's `weight_decay: 1e-4` reaches Adam
through `train_defaults`. 'FAC' draws nothing at random, so the training forward is the eval
forward (`train_propagate_equals_eval`); `dropout_rate` only serves the FD/FM tasks.

Differences from MMRec, none changing the model:
- propagation: torch CSR products with a one-product backward (graph.sparse_matmul) instead
  of COO `torch.sparse.mm`; all views at once (their column blocks side by side, never mixed)
  instead of one compute_graph per view; and, for the adjacencies without self-loops ('pre',
  'plain', 'gcmc'), on the two user-item blocks of the graph: every layer hops between users
  and items, so adj^k [U; I_v] = adj^k [U; 0] + adj^k [0; I_v], whose first part is common to
  all views (they share the user IDs) and is propagated once, each product touching one side
  only (a third fewer multiply-adds). The same sums, up to float summation order;
- the adjacency is built in float64 and stored in float32 (MMRec: float32 throughout; <= 1 ulp);
  an InfoNCE divides its [B, d] anchors by the temperature before the product, where MMRec
  divides the [B, B] logits (the same values up to rounding);
- the mean over the batch of MMRec's CrossEntropyLoss is taken by the caller: `sample_losses`
  returns its rows (the same loss, and a denoising plug-in can weight the rows);
- MMRec's data loader samples negatives that SLMRec never reads; none are sampled here;
- evaluation runs an eval forward with the current parameters; MMRec ranks with the
  embeddings cached by the epoch's last training forward (the parameters before its final Adam
  step) and passes scores through a sigmoid (monotone: the same ranking);
- modules MMRec builds but never uses are not built: the audio head g_a_iva (the audio stage of
  FAC is commented out in MMRec) and the FD/FM dropout; they get no gradient in MMRec, so only
  the random draws of the initialisation differ;
- one modality only (MMRec's compute() needs both and fails otherwise): the fusion concatenates
  the views present (MMRec's own item_feat_dim already counts them); FAC with image only is
  MMRec's kwai branch (the fine-space loss alone); with text only, text takes the image's place
  in the fine space (our choice, MMRec cannot run it);
- options MMRec's code cannot run are rejected with a ConfigError naming the key and listing
  what is supported: `ssl_task` FD / FM / FD+FM (they read config["data.input.dataset"], which
  is None in MMRec, and then the never-defined audio view: AttributeError), `mm_fusion_mode`
  'mean' (its output does not fit the fusion layers' (views x recdim) input: shape error),
  `init` 'normal' (it initialises `embedding_item_ID`, which does not exist). All five
  `adj_type` values are implemented ('plain' A, 'norm' D^-1 (A + I), 'gcmc' D^-1 A, 'pre',
  'mean' D^-1 A + I; MMRec takes any other string as 'mean', here only 'mean' itself);
- the heads of the contrasted side of FAC (g_v_iv, g_t_ivat) have no bias: a bias there adds
  the same value to every logit of an InfoNCE row, which the softmax cancels exactly (its
  gradient in MMRec is zero up to rounding; weight decay only shrinks it);
- `recdim` >= 2, so the coarse space (recdim // 2) is not empty.

Where MMRec differs from the authors' code (zltao/SLMRec; followed: MMRec): the authors' FAC
has an audio stage between image and text (ID->image, ->audio, ->text, three losses) and
fuses four views; MMRec drops audio (its datasets have none) but keeps g_iv_iva in the ID
chain of the text stage. The authors' defaults (conf/SLMRec.properties: lr 0.01, ssl_alpha
0.1, ssl_temp 0.2) lie inside MMRec's grids; the defaults here are MMRec's first grid values.
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
from guider.models.graph import sparse_matmul, to_torch_sparse
from guider.models.modalities import present_modalities
from guider.models.registry import register

MODALITY_ORDER = ("image", "text")  # MMRec's views: ID, then v (image), then t (text)
SYMMETRIC_ADJ_TYPES = ("pre", "plain")
BIPARTITE_ADJ_TYPES = ("pre", "plain", "gcmc")  # no self-loops


@dataclass(frozen=True)
class SLMRecConfig(ModelConfig):
    """MMRec's SLMRec.yaml keys, named as MMRec names them (`recdim` is the embedding size)."""

    recdim: int = setting(64, ge=2)  # MMRec SLMRec.yaml (>= 2: the coarse FAC space is recdim // 2)
    layer_num: int = setting(3, ge=0)  # MMRec SLMRec.yaml
    # MMRec SLMRec.yaml grid [1e-4, 1e-3, 1e-2, 0.1]: first value; read by no code of MMRec's (or the authors')
    reg: float = setting(1e-4, ge=0)
    ssl_task: str = setting("FAC", choices=("FAC",))  # MMRec SLMRec.yaml; FD/FM/FD+FM crash in MMRec
    ssl_alpha: float = setting(0.01, ge=0)  # MMRec SLMRec.yaml grid [0.01, 0.05, 0.1, 0.5, 1.0]: first value
    ssl_temp: float = setting(0.1, gt=0)  # MMRec SLMRec.yaml grid [0.1, 0.2, 0.5, 1.0]: first value
    dropout_rate: float = setting(0.3, ge=0, lt=1)  # MMRec SLMRec.yaml; used by FD/FM only, not by FAC
    mm_fusion_mode: str = setting("concat", choices=("concat",))  # MMRec SLMRec.yaml; 'mean' crashes in MMRec
    temp: float = setting(0.2, gt=0)  # MMRec SLMRec.yaml: main InfoNCE temperature
    init: str = setting("xavier", choices=("xavier",))  # MMRec SLMRec.yaml; 'normal' crashes in MMRec
    adj_type: str = setting("pre", choices=("pre", "plain", "norm", "gcmc", "mean"))  # MMRec SLMRec.yaml

    # MMRec SLMRec.yaml hyper_parameters; learning_rate's grid is train.lr (it stays 0.001, overall.yaml)
    grid = {
        "train.lr": (1e-4, 1e-3, 1e-2, 0.1),
        "model.ssl_temp": (0.1, 0.2, 0.5, 1.0),
        "model.ssl_alpha": (0.01, 0.05, 0.1, 0.5, 1.0),
        "model.reg": (1e-4, 1e-3, 1e-2, 0.1),
    }
    train_defaults = {"weight_decay": 1e-4}  # MMRec SLMRec.yaml weight_decay (Adam's L2 term)


@register("slmrec")
class SLMRec(Recommender):
    display_name = "SLMRec"
    Config = SLMRecConfig
    uses_features = True
    needs_negatives = False  # in-batch softmax: the other positives of the batch are the negatives
    train_propagate_equals_eval = True  # FAC draws nothing at random; no dropout in propagate()

    def __init__(self, inputs: ModelInputs, config: SLMRecConfig):
        super().__init__(inputs, config)
        d = self.recdim = config.recdim
        self.n_layers, self.temp = config.layer_num, config.temp
        self.ssl_alpha, self.ssl_temp = config.ssl_alpha, config.ssl_temp
        present = present_modalities(inputs)
        self.modalities = [m for m in MODALITY_ORDER if m in present]
        for m in self.modalities:  # frozen, as MMRec's v_feat / t_feat tensors
            self.register_buffer(f"{m}_feat", F.normalize(present[m].detach().float(), dim=1), persistent=False)
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.feat_proj = nn.ModuleDict({m: _xavier_linear(present[m].shape[1], d) for m in self.modalities})
        n_views = 1 + len(self.modalities)
        self.user_fusion = _xavier_linear(n_views * d, d)  # MMRec embedding_user_after_GCN
        self.item_fusion = _xavier_linear(n_views * d, d)  # MMRec embedding_item_after_GCN
        self._build_fac_heads(d)
        self._register_adjacency(inputs, config.adj_type)

    def _build_fac_heads(self, d: int) -> None:
        """The FAC projections MMRec uses (g_a_iva, its unused audio head, is not built). The heads of
        the contrasted side have no bias: x_b . (W f_c + bias) adds x_b . bias to every logit of
        row b, which the softmax cancels exactly, so MMRec's bias there never changes the loss."""
        self.fac_id_fine = _xavier_linear(d, d)  # MMRec g_i_iv
        self.fac_feat_fine = _xavier_linear(d, d, bias=False)  # MMRec g_v_iv (the first modality's view)
        if len(self.modalities) > 1:
            self.fac_id_mid = _xavier_linear(d, d)  # MMRec g_iv_iva
            self.fac_id_coarse = _xavier_linear(d, d // 2)  # MMRec g_iva_ivat
            self.fac_feat_coarse = _xavier_linear(d, d // 2, bias=False)  # MMRec g_t_ivat (the text view)

    def _register_adjacency(self, inputs: ModelInputs, adj_type: str) -> None:
        """Without self-loops ('pre', 'plain', 'gcmc') every layer hops between users and items, so
        only the two off-diagonal blocks are kept; 'norm' and 'mean' keep the whole matrix. Each
        product's transpose is kept for the backward pass (None: the matrix is symmetric)."""
        adj = slmrec_adjacency(inputs.train_matrix(), adj_type)
        u, device = self.n_users, inputs.device
        symmetric = adj_type in SYMMETRIC_ADJ_TYPES
        blocks = dict.fromkeys(("norm_adj", "norm_adj_t", "user_item", "user_item_t", "item_user", "item_user_t"))
        if adj_type in BIPARTITE_ADJ_TYPES:
            user_item, item_user = adj[:u, u:], adj[u:, :u]  # [U, I], [I, U]
            blocks["user_item"] = to_torch_sparse(user_item, device)
            blocks["item_user"] = to_torch_sparse(item_user, device)
            if not symmetric:
                blocks["user_item_t"] = to_torch_sparse(user_item.T, device)
                blocks["item_user_t"] = to_torch_sparse(item_user.T, device)
        else:
            blocks["norm_adj"] = to_torch_sparse(adj, device)  # [U+I, U+I]
            blocks["norm_adj_t"] = None if symmetric else to_torch_sparse(adj.T, device)
        for name, matrix in blocks.items():
            self.register_buffer(name, matrix, persistent=False)

    def _to_items(self, x: torch.Tensor) -> torch.Tensor:
        """[U, k] -> [I, k]: one layer from the user side to the item side."""
        transpose = self.user_item if self.item_user_t is None else self.item_user_t
        return sparse_matmul(self.item_user, x, transpose)

    def _to_users(self, x: torch.Tensor) -> torch.Tensor:
        """[I, k] -> [U, k]: one layer from the item side to the user side."""
        transpose = self.item_user if self.user_item_t is None else self.user_item_t
        return sparse_matmul(self.user_item, x, transpose)

    def _side_sums(self, x: torch.Tensor, on_users: bool) -> list[torch.Tensor | None]:
        """[user side, item side] sums over layers 0..L of a signal started on one side of the
        bipartite graph (None on a side it never reaches)."""
        sums: list[torch.Tensor | None] = [x, None] if on_users else [None, x]
        for _ in range(self.n_layers):
            x = self._to_items(x) if on_users else self._to_users(x)
            on_users = not on_users
            side = 0 if on_users else 1
            sums[side] = x if sums[side] is None else sums[side] + x
        return sums

    def _propagate_views(self, user_ids: torch.Tensor, item_views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over layers 0..L of adj^k [users; items] for every view at once (MMRec's
        compute_graph per view): ([U, V d], [I, V d]), the views side by side. Every view starts
        from the same user IDs [U, d], so on a bipartite graph their common part is propagated once."""
        n_views = item_views.shape[1] // user_ids.shape[1]
        if self.norm_adj is not None:  # self-loops: propagate the whole graph
            return self._propagate_whole(torch.cat([user_ids.repeat(1, n_views), item_views], dim=0))
        common_users, common_items = self._side_sums(user_ids, on_users=True)  # [U, d], [I, d] | None
        view_users, view_items = self._side_sums(item_views, on_users=False)  # [U, V d] | None, [I, V d]
        users = common_users.repeat(1, n_views)  # [U, V d]
        users = users if view_users is None else users + view_users
        items = view_items if common_items is None else view_items + common_items.repeat(1, n_views)
        return users / (self.n_layers + 1), items / (self.n_layers + 1)

    def _propagate_whole(self, ego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Users' and items' mean over layers 0..L of norm_adj^k ego, ego [U+I, k]."""
        total, x = ego, ego
        for _ in range(self.n_layers):
            x = sparse_matmul(self.norm_adj, x, self.norm_adj_t)  # [U+I, k]
            total = total + x
        mean = total / (self.n_layers + 1)
        return mean[: self.n_users], mean[self.n_users :]

    def propagate(self) -> Embeddings:
        item_views = [self.item_emb] + [self.feat_proj[m](getattr(self, f"{m}_feat")) for m in self.modalities]
        # [U, V d], [I, V d]: every view pairs its items with the user IDs; side by side = MMRec's concat fusion
        user_views, item_views = self._propagate_views(self.user_emb, torch.cat(item_views, dim=1))
        return Embeddings(
            users=self.user_fusion(user_views),  # [U, d]
            items=self.item_fusion(item_views),  # [I, d]
            extras={"item_views": item_views},  # [I, V d]: ID, image, text blocks, before fusion
        )

    def sample_losses(self, emb, users, pos, neg):
        """[B] in-batch InfoNCE row of each (user, positive) + ssl_alpha x its FAC rows; `neg` is ignored."""
        user = F.normalize(emb.users[users], dim=1)  # [B, d]
        item = F.normalize(emb.items[pos], dim=1)  # [B, d]
        main = in_batch_infonce(user, item, self.temp)  # [B]
        return main + self.ssl_alpha * self.fac_losses(emb.extras["item_views"][pos])

    def fac_losses(self, item_views: torch.Tensor) -> torch.Tensor:
        """[B] FAC rows of the batch items' propagated views [B, V d]: ID vs first modality (fine),
        then the ID projection mapped on vs the second modality (coarse, recdim // 2)."""
        id_view, *feature_views = item_views.split(self.recdim, dim=1)  # each [B, d]
        anchor = self.fac_id_fine(id_view)  # [B, d]
        losses = in_batch_infonce(anchor, self.fac_feat_fine(feature_views[0]), self.ssl_temp)
        if len(feature_views) > 1:
            coarse = self.fac_id_coarse(self.fac_id_mid(anchor))  # [B, d // 2]
            losses = losses + in_batch_infonce(coarse, self.fac_feat_coarse(feature_views[1]), self.ssl_temp)
        return losses


def in_batch_infonce(anchor: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B] cross-entropy of row b of anchor @ target.T / temperature with class b (MMRec's
    CrossEntropyLoss over in-batch logits, before its mean)."""
    logits = (anchor / temperature) @ target.T  # [B, B]; MMRec divides the logits (same values)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels, reduction="none")


def slmrec_adjacency(train: sp.csr_matrix, adj_type: str) -> sp.csr_matrix:
    """[(U+I), (U+I)] adjacency of the binary user x item matrix `train`, MMRec's create_adj_mat:
    'plain' A, 'norm' D^-1 (A + I), 'gcmc' D^-1 A, 'pre' D^-1/2 A D^-1/2 (degrees + 1e-8),
    'mean' D^-1 A + I; D the row sums, 1/0 taken as 0. Float64."""
    adj = sp.bmat([[None, train], [train.T, None]], format="csr").astype(np.float64)
    eye = sp.eye(adj.shape[0], format="csr")
    if adj_type == "plain":
        return adj
    if adj_type == "pre":
        inv_sqrt = sp.diags(np.power(np.asarray(adj.sum(axis=1)).ravel() + 1e-8, -0.5))
        return (inv_sqrt @ adj @ inv_sqrt).tocsr()
    if adj_type == "norm":
        return _row_normalise(adj + eye)
    if adj_type == "gcmc":
        return _row_normalise(adj)
    if adj_type == "mean":
        return (_row_normalise(adj) + eye).tocsr()
    raise ValueError(f"unknown adj_type {adj_type!r}; supported: plain, norm, gcmc, pre, mean")


def _row_normalise(adj: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1 adj, rows summing to zero left zero (MMRec's normalized_adj_single)."""
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree != 0)
    return (sp.diags(inv) @ adj).tocsr()


def _xavier_linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    """nn.Linear with xavier-uniform weights and PyTorch's default bias, as MMRec's SLMRec."""
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    return layer
