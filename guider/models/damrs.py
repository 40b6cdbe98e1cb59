"""DA-MRS (Xv, Li, Xie, Lin, Liu, Xia, Kang & Lin, "Improving Multi-modal Recommender Systems
by Denoising and Aligning Multi-modal Content and User Feedback", KDD 2024), as MMRec's `DAMRS`
(src/models/damrs.py, the authors' DA-MRS+LightGCN).

A LightGCN (`n_ui_layers`, mean of layers) on the user-item graph, plus three item-item views
built once: a denoised kNN graph per modality (similar in EVERY modality, top `knn_k`) and
the item-item behaviour graph (items sharing >= `iib_min_users` train users, top `iib_topk`).
The item ID embeddings propagated `n_mm_layers` times on each view give h_t, h_v, h_s; an
item is scored as its LightGCN embedding plus their mean. Loss, all from MMRec's
calculate_loss (the pieces are guider/models/damrs_parts.py):
- per triple (`sample_losses`): the denoised BPR -(w+ log s(y+ - y-) + w- log s(y- - y+)),
  with detached weights from how well the user's embedding matches the positive and the
  negative in each view (MMRec `get_weight_modal`);
- per batch (`regularization`): `neighbor_weight` x the neighbour discrimination of the
  batch's items in each view against pseudo labels agreed across views, plus `kl_weight` x
  the symmetric KL between sigmoid(user . unit(LightGCN item)) and sigmoid(user . unit(mean
  view)) over the batch's users x items. MMRec's DAMRS has no embedding regulariser.

Differences from MMRec, none changing the model:
- the graphs are sparse and built without a dense items x items matrix (see damrs_parts for
  the mean similarity and the masked top-k in row blocks, the behaviour graph computed from
  the train interactions instead of unpickling `item_graph_dict_2.npy`, and their numerical
  guards); propagation is CSR products with a stored transpose (MMRec: torch.sparse.mm);
- label prediction, pseudo labels and neighbour discrimination run fused in row blocks with
  one similarity product per view and a written-out gradient (about half of MMRec's work for
  the same [batch items, n_items] softmax), the symmetric KL is in closed form and
  log(sigmoid) is logsigmoid (same values up to float rounding; see damrs_parts);
- MMRec creates `image_trs` / `text_trs` linear layers that no loss or score uses: they are
  omitted (they would only draw from the RNG at construction); MMRec also reads
  lambda_coeff, cf_model and reg_weight, and the yaml sets feat_embed_dim and weight_size,
  none of which DAMRS uses;
- it also works with one modality (MMRec needs both): the views are that modality's graph
  and the behaviour graph, weights and pseudo labels over those two;
- fewer than 10 items is a clear error (MMRec's hard-coded topk(10) would fail).
The paper presents DA-MRS as plug-and-play (the authors' logs: on MF-BPR, VBPR and LightGCN);
MMRec ships this LightGCN form, followed here; the plug-in form is the `damrs` method
(guider/methods/damrs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.damrs_parts import (
    PSEUDO_POSITIVES,
    ItemGraphs,
    alignment_losses,
    denoised_bpr,
    feedback_weights,
    view_mean,
)
from guider.models.graph import propagate_mean, sym_norm_bipartite_adj, to_torch_sparse
from guider.models.modalities import present_modalities
from guider.models.registry import register


@dataclass(frozen=True)
class DAMRSConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec DAMRS.yaml
    n_ui_layers: int = setting(2, ge=0)  # MMRec DAMRS.yaml grid [2] (commented out: [1, 2, 3])
    n_mm_layers: int = setting(1, ge=0)  # MMRec DAMRS.yaml grid [1] (commented out: [1, 2])
    knn_k: int = setting(10, ge=1)  # MMRec DAMRS.yaml (commented out: [3, 5, 10, 15, 20])
    kl_weight: float = setting(1.0, ge=0)  # MMRec DAMRS.yaml grid [1]
    neighbor_weight: float = setting(0.001, ge=0)  # MMRec DAMRS.yaml grid [0.001]
    # MMRec DAMRS.yaml item_graph_dict_file 'item_graph_dict_2.npy': the authors'
    # build_iib_graph.py --topk 2 (their README's command)
    iib_topk: int = setting(2, ge=1)
    iib_min_users: int = setting(2, ge=1)  # build_iib_graph.py: shared users >= 2 (hard-coded)

    grid = {  # MMRec DAMRS.yaml hyper_parameters
        "model.n_ui_layers": (2,),
        "model.neighbor_weight": (0.001,),
        "model.kl_weight": (1.0,),
        "model.n_mm_layers": (1,),
        "train.lr": (0.001,),
    }


@register("damrs")
class DAMRS(Recommender):
    display_name = "DA-MRS"
    Config = DAMRSConfig
    uses_features = True

    def __init__(self, inputs: ModelInputs, config: DAMRSConfig):
        super().__init__(inputs, config)
        if self.n_items < PSEUDO_POSITIVES:
            raise ValueError(f"DA-MRS draws {PSEUDO_POSITIVES} pseudo-positive items; the data has {self.n_items}")
        self.n_ui_layers, self.n_mm_layers = config.n_ui_layers, config.n_mm_layers
        self.kl_weight, self.neighbor_weight = config.kl_weight, config.neighbor_weight
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, config.embedding_size)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, config.embedding_size)))
        train = inputs.train_matrix()
        self.register_buffer(
            "norm_adj", to_torch_sparse(sym_norm_bipartite_adj(train), inputs.device), persistent=False
        )
        self.graphs = ItemGraphs(
            present_modalities(inputs),
            train,
            knn_k=config.knn_k,
            iib_topk=config.iib_topk,
            iib_min_users=config.iib_min_users,
            device=inputs.device,
        )

    def propagate(self) -> Embeddings:
        ego = torch.cat([self.user_emb, self.item_emb], dim=0)  # [U+I, d]
        out = propagate_mean(self.norm_adj, ego, self.n_ui_layers)  # [U+I, d]
        users, cf_items = out[: self.n_users], out[self.n_users :]
        views = self.graphs.propagate(self.item_emb, self.n_mm_layers)  # {view: [I, d]}
        content = view_mean(views)  # [I, d]
        extras = {"cf_items": cf_items, "views": views, "content": content}
        return Embeddings(users=users, items=cf_items + content, extras=extras)

    def sample_losses(self, emb, users, pos, neg):
        u = emb.users[users]  # [B, d]
        pos_weight, neg_weight = feedback_weights(u, emb.extras["views"], pos, neg)
        return denoised_bpr((u * emb.items[pos]).sum(-1), (u * emb.items[neg]).sum(-1), pos_weight, neg_weight)

    def regularization(self, emb, users, pos, neg):
        extras = emb.extras
        neighbour, kl = alignment_losses(
            emb.users, extras["cf_items"], extras["views"], extras["content"], users, pos, neg
        )
        return self.neighbor_weight * neighbour + self.kl_weight * kl
