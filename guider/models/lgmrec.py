"""LGMRec (Z. Guo, J. Li, G. Li, C. Wang, S. Shi & B. Ruan, "LGMRec: Local and Global Graph
Learning for Multimodal Recommendation", AAAI 2024), as MMRec's `LGMRec` (src/models/lgmrec.py,
src/configs/model/LGMRec.yaml; the authors' repository georgeguo-cn/LGMRec holds the same model).

Local graph embeddings, both on the symmetric-normalised user-item graph D^-1/2 A D^-1/2
(degrees + 1e-7):
- collaborative (CGE): the user and item ID embeddings, LightGCN-propagated `n_ui_layers`
  times, the mean of layers 0..L (`cf_model` 'mf': no propagation);
- modality-specific (MGE), per modality: the frozen item features times a projection matrix
  are the items' modal features, each user's the mean of its items'; together they are
  propagated `n_mm_layers` times and the last layer is kept (no mean). The local embeddings are
  CGE + the sum over modalities of the row-normalised MGE.
Global hypergraph embeddings (GHE), per modality: the item-hyperedge dependencies are the item
features times a learnable [d_m, hyper_num] matrix, the user-hyperedge dependencies the sum of
their items' rows (A @ H_i); each is turned into soft assignments by a Gumbel-softmax over the
hyperedges (temperature `tau`), with dropout (1 - `keep_rate`) in training. Message passing
starts from the CGE items and runs `n_hyper_layer` times hyperedges = H_i^T x, x = H_i @
hyperedges; the users get H_u @ (the last layer's hyperedges). The GHE of a node is the sum over
modalities; the final embedding = local + `alpha` x row-normalised GHE; score = user . item.

Loss (MMRec's calculate_loss): BPR (-log sigmoid, batch mean) + `cl_weight` x the hypergraph
contrastive loss + `reg_weight` x MMRec's EmbLoss of the batch's final user / positive /
negative embeddings (sum of their Frobenius norms over the batch size; `regularization`). The
contrastive loss is an InfoNCE *summed* over the batch: each user's image-hyperedge embedding
against its text-hyperedge embedding, all users' text-hyperedge embeddings the candidates, and
the same for each positive item against all items; cosine similarities over `tau`. Each InfoNCE
row belongs to one triple, so `sample_losses` returns bpr_b + cl_weight x B x (user row + item
row), whose mean is MMRec's loss.

Randomness: the Gumbel noise and the dropout masks are drawn from torch's global RNG (seeded by
the trainer every epoch), in MMRec's order (noise image items, image users, text items, text
users, then masks in the same order), so for the same RNG state the draws are MMRec's.
MMRec draws Gumbel noise in evaluation too (F.gumbel_softmax does not look at the mode); so
does this model by default (`eval_gumbel_noise`); with False, evaluation uses the noise-free
softmax(logits / tau). Dropout is off in evaluation. The training forward therefore differs
from the eval forward (`train_propagate_equals_eval = False`).

With ONE modality (MMRec's forward then fails: its else-branch leaves the hyperedge embeddings it
returns undefined): the local and global parts use the modality present, and the contrastive
loss, which contrasts image against text, is absent. No module of the absent modality is built.

Differences from MMRec, none changing the model:
- sparse throughout: every product with the user-item matrix (user modal features, user
  hyperedge dependencies) is one torch CSR product with a one-product backward
  (graph.sparse_matmul, the transpose stored once) instead of COO `torch.sparse.mm`, all
  modalities' column blocks side by side (never mixed); the same for the normalised graph, whose
  propagation carries the CGE and every MGE block in one product per layer for the layers they
  share. The CGE mean of layers is a running sum. The same sums up to float summation order;
- each modality's projection and hyperedge matrix multiply the features as one [d_m, d + H]
  product (their column blocks side by side), so the large feature matrix is read once;
- hypergraph message passing computes the user side only after the last layer (MMRec overwrites
  it every layer; the same result);
- the InfoNCE row is log(sum_j exp(l_j)) - l_pos with the anchor divided by tau before the
  product, where MMRec computes -log(exp(l_pos) / sum_j exp(l_j)) on the divided logits (the
  same value up to rounding; the same float32 range: exp overflows for tau < 0.0114 in both);
  the positive's normalised vector is taken from the normalised candidates (MMRec normalises it
  twice; the same numbers);
- MMRec's `feat_embed_dim` (64) is the projections' width and must equal `embedding_size` (the
  CGE and MGE are added), so there is no separate setting: the projections are `embedding_size`
  wide. `tau`, hard-coded 0.2 in MMRec's code (for both the Gumbel-softmax and the InfoNCE), is
  a setting with that default;
- the ID embeddings are plain Parameters, xavier-uniform initialised as MMRec's (whose
  nn.Embedding first draws a normal initialisation that xavier_uniform_ overwrites: the same
  distribution, other initial values for a seed);
- duplicate train interactions count once in every graph (MMRec's normalised graph collapses
  them too, its COO interaction matrix would count them twice; its datasets have none);
- evaluation runs one forward for all users; MMRec's full_sort_predict runs one per batch of
  evaluated users (eval_batch_size 4096), each with fresh Gumbel noise. Every user's scores come
  from one draw in both, so the expected metrics are the same; only users of one MMRec batch share
  their draw;
- one modality is supported as described above (MMRec fails); options MMRec cannot run are
  rejected with a ConfigError naming the key: `cf_model` other than 'lightgcn' / 'mf' (MMRec:
  undefined embeddings) and `n_hyper_layer` 0 (MMRec: undefined user embeddings).

MMRec's code and the paper (followed: MMRec's code, which is the authors' latest lgmrec.py; the
authors' first version assigned the text users' Gumbel-softmax to the image users, a typo fixed
later). The paper's equations were not at hand when this was written; the code's choices to check
against them are: torch's standard Gumbel noise -log(-log U) added to the raw dependencies; user
dependencies that are sums (A @ H_i), not means, of their items'; the regulariser being EmbLoss on
the batch's final embeddings (unsquared norms), not an L2 penalty on the parameters; the
contrastive loss summed, not averaged, over the batch; one fixed tau = 0.2 for both uses.

Defaults: LGMRec.yaml's active values, the Baby block (n_hyper_layer 1, hyper_num 4, keep_rate
0.5, alpha 0.3); the yaml's commented blocks give Sports (1, 4, 0.4, 0.6) and Clothing (2, 64,
0.2, 0.2). Every list in the yaml has one value, so the grid is a single point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import sparse_matmul, sym_norm_bipartite_adj, to_torch_sparse
from guider.models.losses import emb_norm_loss
from guider.models.modalities import present_modalities
from guider.models.registry import register

MODALITY_ORDER = ("image", "text")  # MMRec's v, then t: its modules and random draws in this order
CONTRAST = ("image", "text")  # the hypergraph contrastive loss: image-hyperedge anchors, text candidates


@dataclass(frozen=True)
class LGMRecConfig(ModelConfig):
    # MMRec LGMRec.yaml / overall.yaml; also the projections' width (LGMRec.yaml feat_embed_dim 64 must equal it)
    embedding_size: int = setting(64, ge=1)
    cf_model: str = setting("lightgcn", choices=("lightgcn", "mf"))  # MMRec LGMRec.yaml
    n_ui_layers: int = setting(2, ge=0)  # MMRec LGMRec.yaml grid [2]
    n_mm_layers: int = setting(2, ge=0)  # MMRec LGMRec.yaml grid [2]
    n_hyper_layer: int = setting(1, ge=1)  # MMRec LGMRec.yaml grid [1] (Baby; Sports 1, Clothing 2)
    hyper_num: int = setting(4, ge=1)  # MMRec LGMRec.yaml grid [4] (Baby; Sports 4, Clothing 64)
    keep_rate: float = setting(0.5, gt=0, le=1)  # MMRec LGMRec.yaml grid [0.5] (Baby; Sports 0.4, Clothing 0.2)
    alpha: float = setting(0.3, ge=0)  # MMRec LGMRec.yaml grid [0.3] (Baby; Sports 0.6, Clothing 0.2)
    cl_weight: float = setting(1e-4, ge=0)  # MMRec LGMRec.yaml grid [1e-4]
    reg_weight: float = setting(1e-6, ge=0)  # MMRec LGMRec.yaml grid [1e-6]
    tau: float = setting(0.2, gt=0)  # MMRec lgmrec.py hard-codes self.tau = 0.2 (Gumbel-softmax and InfoNCE)
    # MMRec's forward draws Gumbel noise in evaluation too (F.gumbel_softmax ignores the mode);
    # False: evaluate with the noise-free softmax(logits / tau) (ours, not MMRec's)
    eval_gumbel_noise: bool = setting(True)

    grid = {  # MMRec LGMRec.yaml hyper_parameters (one value each; learning_rate 0.001 is not searched)
        "model.n_ui_layers": (2,),
        "model.n_mm_layers": (2,),
        "model.n_hyper_layer": (1,),
        "model.hyper_num": (4,),
        "model.keep_rate": (0.5,),
        "model.alpha": (0.3,),
        "model.cl_weight": (1e-4,),
        "model.reg_weight": (1e-6,),
    }


@register("lgmrec")
class LGMRec(Recommender):
    display_name = "LGMRec"
    Config = LGMRecConfig
    uses_features = True
    train_propagate_equals_eval = False  # fresh Gumbel noise every forward and dropout in training

    def __init__(self, inputs: ModelInputs, config: LGMRecConfig):
        super().__init__(inputs, config)
        d = self.embedding_size = config.embedding_size
        self.n_cf_layers = config.n_ui_layers if config.cf_model == "lightgcn" else 0
        self.n_mm_layers, self.n_hyper_layer = config.n_mm_layers, config.n_hyper_layer
        self.hyper_num, self.dropout = config.hyper_num, 1.0 - config.keep_rate
        self.alpha, self.tau, self.eval_gumbel_noise = config.alpha, config.tau, config.eval_gumbel_noise
        self.cl_weight, self.reg_weight = config.cl_weight, config.reg_weight
        present = present_modalities(inputs)
        self.modalities = [m for m in MODALITY_ORDER if m in present]
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))  # MMRec user_embedding
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))  # MMRec item_id_embedding
        self.feat_trs = nn.ParameterDict()  # MMRec item_image_trs / item_text_trs: [d_m, d]
        self.hyper = nn.ParameterDict()  # MMRec v_hyper / t_hyper: [d_m, hyper_num]
        for m in self.modalities:  # frozen, as MMRec's from_pretrained(freeze=True); not copied
            self.register_buffer(f"{m}_feat", present[m].detach().float(), persistent=False)
            width = present[m].shape[1]
            self.feat_trs[m] = nn.Parameter(nn.init.xavier_uniform_(torch.empty(width, d)))
            self.hyper[m] = nn.Parameter(nn.init.xavier_uniform_(torch.empty(width, config.hyper_num)))
        self._register_graphs(inputs)

    def _register_graphs(self, inputs: ModelInputs) -> None:
        """The binary user-item matrix and its transpose (for the backward pass), the users'
        1 / (degree + 1e-7), and the normalised (users + items) graph (symmetric)."""
        train = inputs.train_matrix()
        inv_degree = 1.0 / (np.diff(train.indptr).astype(np.float64) + 1e-7)  # [U]
        self.register_buffer("user_item", to_torch_sparse(train, inputs.device), persistent=False)
        self.register_buffer("item_user", to_torch_sparse(train.T.tocsr(), inputs.device), persistent=False)
        inv_degree = torch.from_numpy(inv_degree.astype(np.float32)).to(inputs.device).unsqueeze(1)  # [U, 1]
        self.register_buffer("inv_user_degree", inv_degree, persistent=False)
        self.register_buffer(
            "norm_adj", to_torch_sparse(sym_norm_bipartite_adj(train), inputs.device), persistent=False
        )

    # --- the forward pass ---------------------------------------------------------------------
    def propagate(self) -> Embeddings:
        item_feats, item_logits = self._item_projections()  # {m: [I, d]}, {m: [I, H]}
        user_feats, user_logits = self._user_aggregates(item_feats, item_logits)  # {m: [U, d]}, {m: [U, H]}
        item_assign, user_assign = {}, {}
        for m in self.modalities:  # MMRec's order of the Gumbel draws
            item_assign[m] = self._soft_assignment(item_logits[m])  # [I, H]
            user_assign[m] = self._soft_assignment(user_logits[m])  # [U, H]
        cge, modal = self._local_propagation(user_feats, item_feats)  # [U+I, d], {m: [U+I, d]}
        hyper_users, hyper_items = {}, {}
        for m in self.modalities:  # MMRec's order of the dropout draws (items, then users)
            items_m, users_m = self._drop(item_assign[m]), self._drop(user_assign[m])
            hyper_users[m], hyper_items[m] = hypergraph_propagation(
                items_m, users_m, cge[self.n_users :], self.n_hyper_layer
            )
        local = cge + sum(F.normalize(modal[m]) for m in self.modalities)  # [U+I, d]
        users = local[: self.n_users] + self.alpha * F.normalize(sum(hyper_users.values()))  # [U, d]
        items = local[self.n_users :] + self.alpha * F.normalize(sum(hyper_items.values()))  # [I, d]
        return Embeddings(
            users=users,
            items=items,
            extras={"hyper_users": hyper_users, "hyper_items": hyper_items},  # {m: [U, d]}, {m: [I, d]}
        )

    def _item_projections(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per modality the items' modal features X W [I, d] and hyperedge dependencies X V [I, H],
        from one product with [W | V] (the feature matrix read once)."""
        feats, logits = {}, {}
        for m in self.modalities:
            both = getattr(self, f"{m}_feat") @ torch.cat([self.feat_trs[m], self.hyper[m]], dim=1)  # [I, d + H]
            feats[m], logits[m] = both.split([self.embedding_size, self.hyper_num], dim=1)
        return feats, logits

    def _user_aggregates(self, item_feats, item_logits) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per modality the users' mean item features [U, d] and summed hyperedge dependencies
        A @ H_i [U, H], all from one CSR product over the modalities' column blocks."""
        blocks = [block for m in self.modalities for block in (item_feats[m], item_logits[m])]
        summed = sparse_matmul(self.user_item, torch.cat(blocks, dim=1), self.item_user)  # [U, M (d + H)]
        parts = summed.split([self.embedding_size, self.hyper_num] * len(self.modalities), dim=1)
        feats = {m: parts[2 * k] * self.inv_user_degree for k, m in enumerate(self.modalities)}  # [U, d]
        logits = {m: parts[2 * k + 1] for k, m in enumerate(self.modalities)}  # [U, H]
        return feats, logits

    def _soft_assignment(self, logits: torch.Tensor) -> torch.Tensor:
        """[N, H] soft hyperedge assignments: MMRec's F.gumbel_softmax(logits, tau), or the noise-free
        softmax(logits / tau) in evaluation when `eval_gumbel_noise` is off."""
        if self.training or self.eval_gumbel_noise:
            return F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=1)
        return torch.softmax(logits / self.tau, dim=1)

    def _drop(self, assignment: torch.Tensor) -> torch.Tensor:
        return F.dropout(assignment, p=self.dropout, training=self.training)  # MMRec's nn.Dropout(1 - keep_rate)

    def _local_propagation(self, user_feats, item_feats) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """CGE [U+I, d] (mean of layers 0..n_cf_layers) and each modality's MGE [U+I, d] (layer
        n_mm_layers), all blocks carried by one product per layer while both need it."""
        d, n_cf, n_mm = self.embedding_size, self.n_cf_layers, self.n_mm_layers
        users = torch.cat([self.user_emb, *(user_feats[m] for m in self.modalities)], dim=1)  # [U, (1 + M) d]
        items = torch.cat([self.item_emb, *(item_feats[m] for m in self.modalities)], dim=1)  # [I, (1 + M) d]
        x = torch.cat([users, items])  # [U+I, (1 + M) d]: ID embeddings, then each modality's features
        total = x[:, :d]  # layer 0 of the CGE
        for _ in range(min(n_cf, n_mm)):
            x = sparse_matmul(self.norm_adj, x)
            total = total + x[:, :d]
        cf, modal = x[:, :d], x[:, d:]
        for _ in range(n_cf - min(n_cf, n_mm)):
            cf = sparse_matmul(self.norm_adj, cf.contiguous())
            total = total + cf
        for _ in range(n_mm - min(n_cf, n_mm)):
            modal = sparse_matmul(self.norm_adj, modal.contiguous())
        blocks = modal.split(d, dim=1)
        return total / (n_cf + 1), {m: blocks[k] for k, m in enumerate(self.modalities)}

    # --- the loss -----------------------------------------------------------------------------
    def sample_losses(self, emb, users, pos, neg):
        """[B] BPR of each triple + cl_weight x B x its two InfoNCE rows (MMRec sums them over the batch)."""
        u = emb.users[users]  # [B, d]
        per_sample = -F.logsigmoid((u * emb.items[pos]).sum(-1) - (u * emb.items[neg]).sum(-1))  # [B]
        if not all(m in self.modalities for m in CONTRAST):
            return per_sample  # one modality: nothing to contrast
        anchor, target = CONTRAST
        hyper_users, hyper_items = emb.extras["hyper_users"], emb.extras["hyper_items"]
        contrast = infonce_rows(hyper_users[anchor][users], hyper_users[target], users, self.tau)  # [B]
        contrast = contrast + infonce_rows(hyper_items[anchor][pos], hyper_items[target], pos, self.tau)
        return per_sample + (self.cl_weight * len(users)) * contrast

    def regularization(self, emb, users, pos, neg):
        return self.reg_weight * emb_norm_loss(emb.users[users], emb.items[pos], emb.items[neg])


def hypergraph_propagation(
    item_assign: torch.Tensor, user_assign: torch.Tensor, items: torch.Tensor, n_layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """MMRec's HGNNLayer: `n_layers` times hyperedges = H_i^T x [H, d], x = H_i @ hyperedges,
    from x = items [I, d]; returns (H_u @ last hyperedges [U, d], the last x [I, d])."""
    x = items
    for _ in range(n_layers):
        hyperedges = item_assign.T @ x  # [H, d]
        x = item_assign @ hyperedges  # [I, d]
    return user_assign @ hyperedges, x


def infonce_rows(anchors: torch.Tensor, candidates: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """[B] -log(exp(cos(a_b, c_t_b) / tau) / sum_j exp(cos(a_b, c_j) / tau)) of anchors [B, d]
    against all candidates [N, d], row b's positive being candidate targets[b] (MMRec's
    ssl_triple_loss before its sum), as log(sum_j exp(l_j)) - l_pos."""
    scaled = F.normalize(anchors) / tau  # [B, d]
    unit = F.normalize(candidates)  # [N, d]
    positive = (scaled * unit[targets]).sum(-1)  # [B]
    return (scaled @ unit.T).exp_().sum(-1).log() - positive  # [B, N] logits, exponentiated in place
