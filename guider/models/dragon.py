"""DRAGON (Zhou, Zhou & Shen, "Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal
Recommendation", ECAI 2023), as MMRec's `DRAGON` (the authors' hongyurain/DRAGON models/dragon.py,
which MMRec carries unchanged but for whitespace).

Dual representations from a heterogeneous and two homogeneous graphs:
- the user-item graph, one GCN per modality: x_m = row-L2-normalise([p_m ; MLP_m(f_m)]) stacks a
  free user preference p_m [U, d] over the items' projected features (MLP_m: Linear(dim, 4d),
  leaky ReLU, Linear(4d, d)); the representation is x_m + A x_m + A^2 x_m, A the symmetric
  D^-1/2 A D^-1/2 bipartite adjacency (MMRec's torch_geometric Base_gcn, aggr 'add');
- attentive concatenation ('cat' construction): a user is [w_u0 v_u || w_u1 t_u] (`weight_u`,
  [U, 2], trained, initialised to a softmax of small normals), an item [v_i || t_i] (image
  block first); with one modality, that modality's representation alone;
- the item-item graph, frozen: each modality's cosine kNN graph of the raw features (`knn_k`,
  the item itself included), D^-1/2 A D^-1/2 normalised (degrees + 1e-7), mixed
  `mm_image_weight` : 1 - weight; items <- items + S^n_mm_layers items;
- the user-user graph: each user's `k` neighbours sharing the most train items, resampled every
  epoch (`on_epoch_start`, MMRec's `topk_sample`): fewer than `k` neighbours are padded with
  copies of random ones, no neighbour gives no term; a neighbour's weight is the softmax of its
  co-occurrence count over the `k` slots (`user_aggr_mode` 'softmax'); users <- users +
  sum_j w_uj users_j (the fused, concatenated user representations).
Score u . i. Loss (MMRec's calculate_loss): -mean log2 sigmoid(s_pos - s_neg) + reg_weight x
(sum_m mean p_m[batch users]^2 + mean weight_u^2). The BPR and preference terms are means over
batch rows, so both are per-triple terms (`sample_losses`); the weight_u term is the
`regularization`.

The user-user graph. MMRec reads it from `user_graph_dict.npy`, made by a separate script
(MMRec preprocessing/dualgnn-gen-u-u-matrix.py, the authors' tools/generate-u-u-matrix.py: the
same code): it takes the rows of the interaction file with x_label == 0 (the train split), each
user's item *set*, fills a dense float users x users matrix with |items(u) & items(v)| for every
pair u != v (the diagonal stays 0), and keeps for each user torch.topk of its row with
k = min(number of non-zero entries, 200): at most 200 co-occurring users, most shared items
first, with their counts; a user sharing no item gets empty lists. topk_sample then takes the
first `k` (40) of each list. Here `graph.user_cooccurrence_topk(train, min(k, 200))` computes the
same lists from the train interactions given to the model, by sparse products (no dense
users x users matrix). Where they may differ: ties in the count. torch.topk orders equal values
in no specified way; here ties go to the lower user id. That only decides which of tied
neighbours take the last places at a cut (200, then `k`) and the order of the slots (the padding
picks slots uniformly, so the sampled graph has the same distribution).

Where MMRec's code differs from the paper and the authors' setup, this module follows MMRec:
the code reads neither the authors' yaml keys `k` (grid [30, 40, 50]) nor `u_layers` ([1, 2]):
it hard-codes 40 sampled neighbours and one user-graph hop; MMRec's DRAGON.yaml fixes knn_k 10,
n_mm_layers 1 and mm_image_weight 0.1, which the authors' yaml searches ([5, 10, 20], [1, 2],
0.1 .. 0.9). The main loss is BPR in base 2 (-log2 sigmoid, MMRec's calculate_loss), i.e. the
usual natural-log BPR times 1 / ln 2, which weighs it against reg_weight differently. The
authors' published runs (hongyurain/DRAGON README) use learning rate 1e-4; the trainer keeps
MMRec's 0.001, a value of the grid.

Differences from MMRec's code, none changing the model:
- GCN message passing is CSR sparse-dense products (`graph.sparse_matmul`) instead of
  torch_geometric; the normalised adjacency is `graph.sym_norm_bipartite_adj` (degrees + 1e-7,
  a relative change below float32 resolution) of the binary train matrix (a duplicated train
  pair is one edge, as in MMRec, whose inter_matrix(form='coo').astype(np.float32) sums
  duplicates). Base_gcn's remove_self_loops is a no-op on a bipartite graph. The modalities
  are propagated together as one [U+I, M d] matrix (each column block independently: the same
  numbers, one pass over the graph per hop).
- The item kNN graph is built blockwise (`graph.knn_graph`, no dense items x items matrix), a
  raw feature row of zero norm gives no NaN, and it is rebuilt from the features on every
  construction: MMRec caches it in `mm_adj_{knn_k}.pt` in the dataset folder and loads that
  file if it exists, whatever mm_image_weight (or features) made it.
- The item-graph product uses a stored transpose for the backward (the kNN graph is not
  symmetric); the user-graph aggregation is a sparse [U, U] CSR product (repeated neighbours
  summed) instead of gathering [U, k, D] and a batched matmul; a user without neighbours has
  an empty row (MMRec: k copies of user 0 with weight 0). Same result.
- The user graph is built in-package from the train split (no user_graph_dict.npy; see above).
  The padding is vectorised over users (`user_graph.sample_user_graph`, a loop over the `k`
  slots) and draws its uniforms from on_epoch_start's torch generator instead of numpy's
  global RNG: slot p (p >= the user's neighbour count) copies one of the p slots filled before
  it, uniformly at random (copies included), with its count, as MMRec's np.random.randint.
- The sampled graph (`user_graph_index`, `user_graph_weight`) is part of the state dict, so
  restoring the best epoch also restores the user graph that epoch trained and was validated
  with.
- Evaluation propagates with the current parameters; MMRec's full_sort_predict scores with
  `result_embed` cached by the epoch's last training forward, i.e. before the epoch's last
  optimiser step.
- `embedding_size` sets the latent width and `n_layers` the number of GCN hops: MMRec's code
  hard-codes dim_latent = 64 and two hops (h, h_1), the yaml values, so the defaults give
  MMRec's model. `feat_embed_dim` (yaml 64) is not a setting: it only sizes image_trs/text_trs,
  which MMRec's forward never uses.
- -log2 sigmoid(x) is computed as -logsigmoid(x) / ln 2: the same value, finite where MMRec's
  sigmoid underflows to 0.
- MMRec's unused parts are left out: image_embedding / text_embedding (trainable copies of the
  features, only read to build the kNN graph: the forward uses the raw v_feat / t_feat, so
  they never receive a gradient), image_trs, text_trs, MLP_v, MLP_t, MLP_user, weight_i
  (neither in the 'cat' forward nor in its loss), the result_embed Parameter (overwritten by
  every forward), the item-dropped edge lists edge_index_dropv/t (passed to GCN.forward and
  never read) and GCN's `dropout` (stored, never applied): so training and evaluation
  propagate the same function.
- The raw features are frozen buffers (MMRec's v_feat / t_feat are plain tensors, untrained).
"""

from __future__ import annotations

import math
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
from guider.models.user_graph import SampledUserGraph

FUSION_ORDER = ("image", "text")  # MMRec concatenates (v_rep, t_rep); weight_u columns in this order
LEARNING_RATES = (0.1, 0.01, 0.001, 1e-4, 1e-5)


@dataclass(frozen=True)
class DRAGONConfig(ModelConfig):
    # MMRec DRAGON.yaml (MMRec's code hard-codes dim_latent = 64, the same value)
    embedding_size: int = setting(64, ge=1)
    # MMRec DRAGON.yaml n_layers 2 (its GCN ignores the key and hard-codes the two hops h, h_1)
    n_layers: int = setting(2, ge=0)
    n_mm_layers: int = setting(1, ge=0)  # MMRec DRAGON.yaml: hops on the item-item graph
    knn_k: int = setting(10, ge=1)  # MMRec DRAGON.yaml
    mm_image_weight: float = setting(0.1, ge=0, le=1)  # MMRec DRAGON.yaml: 0.1 image kNN + 0.9 text kNN
    aggr_mode: str = setting("add", choices=("add",))  # MMRec DRAGON.yaml grid ['add']
    # MMRec DRAGON.yaml grid [0.1 .. 1e-5]: 0.001, the authors' best on Baby (hongyurain/DRAGON
    # README: Baby 0.001, Sports 0.001, Clothing 0.1, each with learning rate 1e-4)
    reg_weight: float = setting(1e-3, ge=0)
    # sampled neighbours per user: MMRec dragon.py hard-codes self.k = 40
    k: int = setting(40, ge=1)
    # MMRec dragon.py hard-codes user_aggr_mode = 'softmax'; topk_sample also has 'mean' (1/k)
    user_aggr_mode: str = setting("softmax", choices=("softmax", "mean"))

    grid = {  # MMRec DRAGON.yaml hyper_parameters
        "model.aggr_mode": ("add",),
        "model.reg_weight": (0.1, 0.01, 0.001, 1e-4, 1e-5),
        "train.lr": LEARNING_RATES,  # learning_rate grid; the trainer keeps MMRec's 0.001
    }


@register("dragon")
class DRAGON(SampledUserGraph, Recommender):
    display_name = "DRAGON"
    Config = DRAGONConfig
    uses_features = True
    # No dropout and no dropped edges (MMRec's are dead code); the user graph changes only in
    # on_epoch_start, so within an epoch training and evaluation propagate the same function.
    train_propagate_equals_eval = True

    def __init__(self, inputs: ModelInputs, config: DRAGONConfig):
        super().__init__(inputs, config)
        size = config.embedding_size
        self.n_layers, self.n_mm_layers, self.reg_weight = config.n_layers, config.n_mm_layers, config.reg_weight
        self.k, self.user_aggr_mode = config.k, config.user_aggr_mode
        present = present_modalities(inputs)
        modalities = {m: present[m] for m in FUSION_ORDER if m in present}  # image block first
        self.modalities = list(modalities)
        for name, feat in modalities.items():  # frozen inputs, rebuilt from the dataset
            self.register_buffer(f"{name}_feat", feat.detach(), persistent=False)
        self.preference = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, size))) for m in modalities}
        )
        self.feat_mlp = nn.ModuleDict({m: _feature_mlp(f.shape[1], size) for m, f in modalities.items()})
        # [U, 2] softmax over modalities of xavier-normal draws (MMRec's [U, 2, 1]: the same fans)
        self.weight_u = nn.Parameter(torch.softmax(nn.init.xavier_normal_(torch.empty(self.n_users, 2)), dim=1))
        train = inputs.train_matrix()
        self.register_buffer(
            "norm_adj", to_torch_sparse(sym_norm_bipartite_adj(train), inputs.device), persistent=False
        )
        mm_adj = to_csr(item_knn_graph(modalities, config.knn_k, config.mm_image_weight))
        self.register_buffer("mm_adj", mm_adj, persistent=False)
        self.register_buffer("mm_adj_t", transpose_csr(mm_adj), persistent=False)  # for the backward pass
        self._init_user_graph(train, inputs.device)

    # --- the forward pass -----------------------------------------------------------------------
    def propagate(self) -> Embeddings:
        reps = self.heterogeneous_representations()  # [U+I, M d]
        users = self.fuse_users(reps[: self.n_users])  # [U, M d]
        items = reps[self.n_users :]  # [I, M d]
        users = users + sparse_matmul(self.user_adj, users, self.user_adj_t)  # [U, M d]
        items = items + self.item_graph_propagation(items)  # [I, M d]
        return Embeddings(users=users, items=items)

    def heterogeneous_representations(self) -> torch.Tensor:
        """[U+I, M d] x + A x + ... + A^n_layers x of each modality (column blocks image, text)."""
        x = torch.cat([self._modality_input(m) for m in self.modalities], dim=1)  # [U+I, M d]
        total = x
        for _ in range(self.n_layers):
            x = sparse_matmul(self.norm_adj, x)  # [U+I, M d]
            total = total + x
        return total

    def _modality_input(self, modality: str) -> torch.Tensor:
        """[U+I, d] row-normalised [user preference ; projected item features] (MMRec's GCN input)."""
        items = self.feat_mlp[modality](getattr(self, f"{modality}_feat"))  # [I, d]
        return F.normalize(torch.cat([self.preference[modality], items], dim=0), dim=1)

    def fuse_users(self, users: torch.Tensor) -> torch.Tensor:
        """[U, M d] MMRec's 'cat' construction: each modality block times the user's weight."""
        if len(self.modalities) == 1:
            return users
        blocks = users.view(self.n_users, 2, -1)  # [U, 2, d]
        return (blocks * self.weight_u.unsqueeze(-1)).reshape(self.n_users, -1)  # [U, 2 d]

    def item_graph_propagation(self, items: torch.Tensor) -> torch.Tensor:
        """[I, M d] S^n_mm_layers items on the frozen item kNN graph S."""
        h = items
        for _ in range(self.n_mm_layers):
            h = sparse_matmul(self.mm_adj, h, self.mm_adj_t)  # [I, M d]
        return h

    # --- the loss -------------------------------------------------------------------------------
    def sample_losses(self, emb, users, pos, neg):
        """[B] -log2 sigmoid(s_pos - s_neg) + reg_weight x mean_d p_m[u]^2 summed over modalities."""
        u = emb.users[users]  # [B, D]
        diff = (u * emb.items[pos]).sum(-1) - (u * emb.items[neg]).sum(-1)  # [B]
        per_sample = -F.logsigmoid(diff) / math.log(2.0)
        for preference in self.preference.values():
            per_sample = per_sample + self.reg_weight * preference[users].pow(2).mean(-1)
        return per_sample

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * self.weight_u.pow(2).mean()


def item_knn_graph(modalities: dict[str, torch.Tensor], knn_k: int, image_weight: float) -> torch.Tensor:
    """Sparse COO [I, I] MMRec's mm_adj: each modality's normalised kNN graph, mixed by `image_weight`."""
    graphs = {m: sym_normalize(knn_graph(f.detach(), knn_k)) for m, f in modalities.items()}
    if len(graphs) == 1:
        return next(iter(graphs.values()))
    return (image_weight * graphs["image"] + (1.0 - image_weight) * graphs["text"]).coalesce()


def _feature_mlp(dim: int, size: int) -> nn.Sequential:
    """MMRec's GCN.MLP / MLP_1 with leaky ReLU between, PyTorch's default init (MMRec applies none)."""
    return nn.Sequential(nn.Linear(dim, 4 * size), nn.LeakyReLU(), nn.Linear(4 * size, size))
