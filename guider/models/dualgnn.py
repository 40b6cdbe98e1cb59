"""DualGNN (Wang, Wei, Yin, Wu, Song & Nie, "DualGNN: Dual Graph Neural Network for Multimedia
Recommendation", IEEE Transactions on Multimedia, 2021), as MMRec's `DualGNN`.

Two graphs:
- the user-item graph, one GCN per modality: x_m = row-L2-normalise([p_m ; MLP_m(f_m)]) stacks a
  free user preference p_m [U, d] over the items' projected features (MLP_m: Linear(dim, 4d),
  leaky ReLU, Linear(4d, d)); the representation is x_m + A x_m + A^2 x_m with A the
  symmetric-normalised D^-1/2 A D^-1/2 bipartite adjacency (no weights, no non-linearity);
- the user co-occurrence graph: each user's `k` neighbours sharing the most train items
  (MMRec's preprocessing script, built here by `graph.user_cooccurrence_topk`), resampled every
  epoch (`on_epoch_start`, MMRec's `topk_sample`): users with fewer than `k` neighbours are
  padded with copies of random ones, users with none get no neighbour; a neighbour's weight is
  the softmax of its co-occurrence count over the `k` slots (`user_aggr_mode` "softmax").

Fusion: an item is the sum of its modality representations; a user is a per-user weighted
sum (`weight_u`, [U, 2], trained, initialised to a softmax of small normals), then
u <- u + sum_j w_uj u_j over its sampled neighbours. Score u . i. Loss (MMRec's calculate_loss):
-mean log2 sigmoid(s_pos - s_neg) + reg_weight x (sum_m mean p_m[batch users]^2
+ mean weight_u^2 + mean weight_i^2); `weight_i` [I, 2] is only regularised, as in MMRec.
The BPR and preference terms are means over batch rows, so both are per-triple terms
(`sample_losses`); the two weight terms are the `regularization`.

MMRec differs from the authors' code (github.com/wqf321/dualgnn, Model.py) and the paper's
weighted-sum fusion in one place, and this module follows MMRec: MMRec's forward writes
`representation = self.v_rep; representation += self.t_rep`, an in-place add that also turns
`v_rep` into image + text, so its user fusion is w_u0 (v + t) + w_u1 t instead of w_u0 v + w_u1 t
(the authors add out of place). MMRec also drops the authors' third (acoustic) modality.

Differences from MMRec's code, none changing the model:
- GCN message passing is CSR sparse-dense products (`graph.sparse_matmul`) instead of
  torch_geometric; the normalised adjacency is `graph.sym_norm_bipartite_adj` (degrees + 1e-7,
  a relative change below float32 resolution) of the binary train matrix (a duplicated train
  row is one edge, as in MMRec, whose inter_matrix(form='coo').astype(np.float32) sums it).
  Base_gcn's remove_self_loops is a no-op on a bipartite graph. The modalities are
  propagated together as one [U+I, M d] matrix (each column block independently: the same
  numbers, one pass over the graph per hop).
- The user-user graph is built in-package from the train split (no user_graph_dict.npy).
  MMRec's script keeps each user's top 200 and topk_sample takes the first `k` of them; here
  the top min(k, 200) are kept, the same lists. Ties in the co-occurrence count go to the
  lower user id (MMRec: torch.topk's unspecified order among ties), which only matters for
  which of tied neighbours take the last slots.
- The padding is vectorised over users (a loop over the `k` slots) and draws its uniforms
  from on_epoch_start's torch generator instead of numpy's global RNG (np.random.randint).
  It is MMRec's draw: slot p (p >= the user's neighbour count) copies one of the p slots
  filled before it, uniformly at random (copies included), with its count.
- The user-graph aggregation is a sparse [U, U] CSR product (repeated neighbours summed)
  instead of gathering [U, k, d] and a batched matmul; a user without neighbours has an
  empty row (MMRec: k copies of user 0 with weight 0). Same result.
- The sampled graph (`user_graph_index`, `user_graph_weight`) is part of the state dict, so
  restoring the best epoch also restores the user graph that epoch trained and was
  validated with (as MMRec's best_test_upon_valid was computed).
- Evaluation propagates with the current parameters; MMRec's full_sort_predict scores
  with `result_embed` cached by the epoch's last training forward, i.e. before the epoch's
  last optimiser step.
- `embedding_size` sets the latent width and `n_layers` the number of GCN hops: MMRec's
  code ignores both yaml keys and hard-codes dim_latent = 64 and two hops (h, h_1), the yaml
  values, so the defaults give MMRec's model.
- -log2 sigmoid(x) is computed as -logsigmoid(x) / ln 2: the same value, finite where
  MMRec's sigmoid underflows to 0.
- MMRec's unused parts are left out: MLP_v, MLP_t, MLP_user (never in the forward of the
  'weighted_sum' construction, the only one its forward implements), the result_embed
  Parameter (overwritten by every forward), the item-dropped edge lists edge_index_dropv/t
  (passed to GCN.forward and never read) and GCN's `dropout` (stored, never applied): so
  training and evaluation propagate the same function.
- The raw features are frozen buffers (MMRec's v_feat/t_feat are plain tensors, untrained).
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
    sparse_matmul,
    sym_norm_bipartite_adj,
    to_torch_sparse,
)
from guider.models.modalities import present_modalities
from guider.models.registry import register
from guider.models.user_graph import SampledUserGraph

FUSION_ORDER = ("image", "text")  # columns of weight_u: MMRec concatenates (v_rep, t_rep)
LEARNING_RATES = (0.1, 0.01, 0.001, 1e-4, 1e-5)


@dataclass(frozen=True)
class DualGNNConfig(ModelConfig):
    # MMRec DualGNN.yaml (MMRec's code hard-codes dim_latent = 64, the same value)
    embedding_size: int = setting(64, ge=1)
    # MMRec DualGNN.yaml n_layers 2 (its GCN ignores the key and hard-codes the two hops h, h_1)
    n_layers: int = setting(2, ge=0)
    aggr_mode: str = setting("add", choices=("add",))  # MMRec DualGNN.yaml grid ['add']
    reg_weight: float = setting(0.1, ge=0)  # MMRec DualGNN.yaml grid [0.1 .. 1e-5]: first value
    # sampled neighbours per user: MMRec dualgnn.py hard-codes self.k = 40 (the authors'
    # parse.py --sampling default 40)
    k: int = setting(40, ge=1)
    # MMRec dualgnn.py hard-codes user_aggr_mode = 'softmax'; topk_sample also has 'mean' (1/k)
    user_aggr_mode: str = setting("softmax", choices=("softmax", "mean"))

    grid = {  # MMRec DualGNN.yaml hyper_parameters
        "model.aggr_mode": ("add",),
        "model.reg_weight": (0.1, 0.01, 0.001, 1e-4, 1e-5),
        "train.lr": LEARNING_RATES,  # learning_rate grid; the trainer keeps MMRec's 0.001
    }


@register("dualgnn")
class DualGNN(SampledUserGraph, Recommender):
    display_name = "DualGNN"
    Config = DualGNNConfig
    uses_features = True
    # No dropout and no dropped edges (MMRec's are dead code); the user graph changes only in
    # on_epoch_start, so within an epoch training and evaluation propagate the same function.
    train_propagate_equals_eval = True

    def __init__(self, inputs: ModelInputs, config: DualGNNConfig):
        super().__init__(inputs, config)
        size = config.embedding_size
        self.n_layers, self.reg_weight, self.k = config.n_layers, config.reg_weight, config.k
        self.user_aggr_mode = config.user_aggr_mode
        modalities = present_modalities(inputs)
        self.modalities = list(modalities)
        for name, feat in modalities.items():  # frozen inputs, rebuilt from the dataset
            self.register_buffer(f"{name}_feat", feat.detach(), persistent=False)
        self.preference = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, size))) for m in modalities}
        )
        self.feat_mlp = nn.ModuleDict({m: _feature_mlp(f.shape[1], size) for m, f in modalities.items()})
        self.weight_u = nn.Parameter(_modality_weights(self.n_users))  # [U, 2]
        self.weight_i = nn.Parameter(_modality_weights(self.n_items))  # [I, 2], only regularised
        train = inputs.train_matrix()
        self.register_buffer(
            "norm_adj", to_torch_sparse(sym_norm_bipartite_adj(train), inputs.device), persistent=False
        )
        self._init_user_graph(train, inputs.device)

    # --- the forward pass -----------------------------------------------------------------------
    def propagate(self) -> Embeddings:
        reps = self.modality_representations()  # {m: [U+I, d]}
        users = self.fuse_users(reps)  # [U, d]
        users = users + sparse_matmul(self.user_adj, users, self.user_adj_t)  # [U, d]
        items = sum(rep[self.n_users :] for rep in reps.values())  # [I, d]
        return Embeddings(users=users, items=items)

    def modality_representations(self) -> dict[str, torch.Tensor]:
        """{m: [U+I, d]} x + A x + ... + A^n_layers x of each modality, all propagated at once."""
        ego = [self._modality_input(m) for m in self.modalities]
        x = torch.cat(ego, dim=1)  # [U+I, M d]
        total = x
        for _ in range(self.n_layers):
            x = sparse_matmul(self.norm_adj, x)  # [U+I, M d]
            total = total + x
        return dict(zip(self.modalities, total.split(ego[0].shape[1], dim=1)))

    def _modality_input(self, modality: str) -> torch.Tensor:
        """[U+I, d] row-normalised [user preference ; projected item features] (MMRec's GCN input)."""
        items = self.feat_mlp[modality](getattr(self, f"{modality}_feat"))  # [I, d]
        return F.normalize(torch.cat([self.preference[modality], items], dim=0), dim=1)

    def fuse_users(self, reps: dict[str, torch.Tensor]) -> torch.Tensor:
        """[U, d] MMRec's 'weighted_sum' of the modality user representations."""
        if len(reps) == 1:
            return next(iter(reps.values()))[: self.n_users]
        image, text = (reps[m][: self.n_users] for m in FUSION_ORDER)
        # MMRec's in-place `representation += t_rep` also adds text into v_rep (see the docstring)
        return self.weight_u[:, :1] * (image + text) + self.weight_u[:, 1:] * text

    # --- the loss -------------------------------------------------------------------------------
    def sample_losses(self, emb, users, pos, neg):
        """[B] -log2 sigmoid(s_pos - s_neg) + reg_weight x mean_d p_m[u]^2 summed over modalities."""
        u = emb.users[users]  # [B, d]
        diff = (u * emb.items[pos]).sum(-1) - (u * emb.items[neg]).sum(-1)  # [B]
        per_sample = -F.logsigmoid(diff) / math.log(2.0)
        for preference in self.preference.values():
            per_sample = per_sample + self.reg_weight * preference[users].pow(2).mean(-1)
        return per_sample

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * (self.weight_u.pow(2).mean() + self.weight_i.pow(2).mean())


def _feature_mlp(dim: int, size: int) -> nn.Sequential:
    """MMRec's GCN.MLP / MLP_1 with leaky ReLU between, PyTorch's default init (MMRec applies none)."""
    return nn.Sequential(nn.Linear(dim, 4 * size), nn.LeakyReLU(), nn.Linear(4 * size, size))


def _modality_weights(rows: int) -> torch.Tensor:
    """[rows, 2] softmax over the modality axis of xavier-normal draws (MMRec's weight_u/weight_i,
    [rows, 2, 1] there: the same fans, so the same distribution)."""
    return torch.softmax(nn.init.xavier_normal_(torch.empty(rows, len(FUSION_ORDER))), dim=1)
