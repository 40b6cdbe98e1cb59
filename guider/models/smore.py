"""SMORE (R. K. Ong & A. W. H. Khong, "Spectrum-based Modality Representation Fusion Graph
Convolutional Network for Multimodal Recommendation", WSDM 2025), as MMRec's `SMORE`
(src/models/smore.py, src/configs/model/SMORE.yaml; the authors' repository kennethorq/SMORE
holds the same model file).

1. Spectrum modality fusion. Each modality's (trainable) raw features are projected to
   `embedding_size` by a linear layer and taken to the frequency domain along the embedding
   dimension (real FFT, orthonormal). A learnable complex filter per modality (one weight per
   frequency bin, shared by all items) denoises it; the product of the modalities' spectra
   times a learnable complex fusion filter is the fusion spectrum (a circular convolution of
   the modalities in the embedding space). The inverse real FFT brings each back.
2. Item-item views. Each denoised modality (and the fusion) gates the item ID embeddings,
   id * sigmoid(W x + b), which are propagated `n_layers` times on an item-item graph: per
   modality the frozen cosine kNN graph of the raw features (`image_knn_k` / `text_knn_k`
   neighbours, the item itself included, similarity-weighted, D^-1/2 S D^-1/2 with row-sum
   degrees); for the fusion the element-wise max of those graphs over the union of their
   edges (MMRec's `max_pool_fusion`). Users of each view are R @ items, R the user-item block
   of the normalised user-item graph.
3. Behavioural view: LightGCN on D^-1/2 A D^-1/2 of the user-item graph (`n_ui_layers`,
   mean of layers 0..L): the `content` embeddings.
4. Modality-aware preference: each modality view is weighted by a softmax (over the
   embedding dimension) of a query MLP of the fusion view; every view (modalities and fusion)
   is then gated by sigmoid(W content + b), with dropout (`dropout_rate`, training only) on
   those gates; `side` = the mean of the views, and the final node = content + side.
Loss (MMRec's calculate_loss): BPR (-log sigmoid) on the final embeddings + `reg_weight` x
half the squared norms of the batch's final user / positive / negative vectors over the batch
size + `cl_loss` x (InfoNCE(side, content) of the batch's positive items + the same of its
users), cosine similarities over the batch, temperature `temperature`. Every term is one
value per triple (an InfoNCE row per triple), so `sample_losses` returns their sum per triple
and `regularization` is zero.

With ONE modality (MMRec's code needs both and fails otherwise): the fusion spectrum is that
modality's spectrum times the fusion filter (the product over the modalities present), the
fusion graph is that modality's graph (the max over the graphs present), and `side` is the
mean of the two views, the modality's and the fusion's. No module of the absent modality is
built.

Differences from MMRec, none changing the model:
- sparse throughout: the kNN graphs come from a blocked exact cosine top-k
  (`graph.knn_neighbours`) instead of MMRec's dense n x n similarity, and the fusion graph's
  union and max act on edge lists; propagation is a torch CSR product with a one-product
  backward (`graph.sparse_matmul`, the transposes stored once) instead of COO
  `torch.sparse.mm`. Blocked products may round differently from one dense product, which
  could only reorder exact near-ties of the top-k;
- the three views' users are one CSR product R @ [image | text | fusion] (their column blocks
  side by side, never mixed) instead of three; the LightGCN mean of layers is a running sum;
- the graphs are computed at construction, not read from MMRec's cache files
  `image_adj_{k}_True.pt` / `text_adj_{k}_True.pt` (the same values); MMRec's `.cuda()` on
  them becomes the inputs' device;
- numerical guards: cosine similarity of a zero feature row is 0 (F.normalize) where MMRec
  divides 0 by 0, and a kNN row whose degree (sum of its top-k similarities) is not positive
  gets a 0 normaliser where MMRec gets inf -> 0 (zero) or NaN (negative). With real features
  every item is its own first neighbour (similarity 1), so neither happens;
- the user-item graph's degrees get + 1e-7 (the shared `sym_norm_bipartite_adj`) where MMRec
  maps 1/sqrt(0) to 0: the same for isolated nodes, below float32 resolution otherwise;
  duplicate train interactions count once (MMRec's data has none);
- the regulariser divides by the actual batch size; MMRec divides by `train_batch_size`,
  which differs only on the last, shorter batch of an epoch. An InfoNCE row is
  logsumexp(logits) - logit(own pair), MMRec's -log(exp(pos) / sum exp) (the same value up to
  rounding, without overflow for small temperatures);
- `temperature` is a setting: MMRec's yaml sets 0.2 but its calculate_loss hard-codes 0.2
  and never reads it (the default is that 0.2). MMRec's `lambda_coeff` (0.9) is read by no
  code and has no setting here;
- a kNN size larger than the catalogue keeps every item (with a warning); MMRec's torch.topk
  raises. The defaults (40 / 15 neighbours) exceed the tiny test catalogues only;
- one modality is supported as described above (MMRec fails without both);
- the dropout on the preference gates is skipped when `dropout_rate` is 0 (MMRec multiplies
  by an all-ones mask);
- parameters live in dicts keyed by modality (`feat_proj.image` for MMRec's `image_trs`,
  `item_gate.image` for `gate_v`, `prefer_gate.image` for `gate_image_prefer`, `spectral.image`
  for `image_complex_weight`, ...), created in MMRec's order with MMRec's random draws (the ID
  embeddings' discarded nn.Embedding N(0, 1) draws included), and the dropout masks are drawn
  in MMRec's order (image, text, fusion): with the same seed on CPU the initial parameters,
  the loss and the gradients are MMRec's (checked against MMRec's code during development).

MMRec's SMORE is the authors' code (kennethorq/SMORE holds the same smore.py). Defaults: the
authors' best hyper-parameters on Baby (kennethorq/SMORE README, "to replicate Table 2"):
n_ui_layers 4, n_layers 1, image_knn_k 40, text_knn_k 15, cl_loss 0.01, reg_weight 1e-4,
dropout_rate 0.1 (Sports: 3, 1, 10, 10, 0.03, 1e-4, 0; Clothing: 3, 1, 40, 10, 0.01, 1e-5, 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from guider.config.sections import setting
from guider.models.base import Embeddings, ModelConfig, ModelInputs, Recommender
from guider.models.graph import (
    knn_neighbours,
    propagate_mean,
    sparse_matmul,
    sym_norm_bipartite_adj,
    to_csr,
    to_torch_sparse,
    transpose_csr,
)
from guider.models.modalities import present_modalities
from guider.models.registry import register

log = logging.getLogger(__name__)

MODALITY_ORDER = ("image", "text")  # MMRec builds image modules first, then text
FUSION = "fusion"


@dataclass(frozen=True)
class SMOREConfig(ModelConfig):
    embedding_size: int = setting(64, ge=1)  # MMRec SMORE.yaml
    # MMRec SMORE.yaml grid [3, 4]: 4, the authors' best on Baby (kennethorq/SMORE README)
    n_ui_layers: int = setting(4, ge=0)
    n_layers: int = setting(1, ge=0)  # MMRec SMORE.yaml: propagations on the item-item graphs
    image_knn_k: int = setting(40, ge=1)  # MMRec SMORE.yaml grid [10, 15, 20, 40]: 40, best on Baby
    text_knn_k: int = setting(15, ge=1)  # MMRec SMORE.yaml grid [10, 15, 20, 40]: 15, best on Baby
    reg_weight: float = setting(1e-4, ge=0)  # MMRec SMORE.yaml grid [1e-5, 1e-4]: 1e-4, best on Baby
    cl_loss: float = setting(0.01, ge=0)  # MMRec SMORE.yaml: weight of the InfoNCE terms
    # MMRec SMORE.yaml (calculate_loss hard-codes the same 0.2); lambda_coeff 0.9: read by no code
    temperature: float = setting(0.2, gt=0)
    dropout_rate: float = setting(0.1, ge=0, lt=1)  # MMRec SMORE.yaml grid [0, 0.1]: 0.1, best on Baby

    grid = {  # MMRec SMORE.yaml hyper_parameters (learning_rate 0.001 is not searched)
        "model.n_ui_layers": (3, 4),
        "model.image_knn_k": (10, 15, 20, 40),
        "model.text_knn_k": (10, 15, 20, 40),
        "model.reg_weight": (1e-5, 1e-4),
        "model.dropout_rate": (0.0, 0.1),
    }
    train_defaults = {"lr_scheduler": [0.96, 50.0]}  # MMRec SMORE.yaml learning_rate_scheduler [0.96, 50]


# --- frozen graphs ------------------------------------------------------------------------------
def sym_normalized_values(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    """[E] D^-1/2 S D^-1/2 of an edge list, D the row sums (MMRec's get_sparse_laplacian 'sym');
    a row whose degree is not positive gets a 0 normaliser."""
    degree = torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, rows, values)  # [n]
    positive = degree > 0
    inv_sqrt = torch.where(positive, degree.clamp_min(torch.finfo(values.dtype).tiny).rsqrt(), 0.0)  # [n]
    return inv_sqrt[rows] * values * inv_sqrt[cols]


def modality_knn_edges(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, values) [n k] of the normalised cosine kNN graph of raw features (MMRec's
    build_sim + build_knn_normalized_graph(is_sparse=True, norm_type='sym'))."""
    n = features.shape[0]
    if k > n:
        log.warning("smore: knn_k=%d exceeds the %d items; every item is a neighbour", k, n)
        k = n
    with torch.no_grad():
        neighbours, sims = knn_neighbours(features.detach(), k)  # [n, k] each, the item itself included
    rows = torch.arange(n, device=features.device).repeat_interleave(k)  # [n k]
    cols = neighbours.reshape(-1)  # [n k]
    return rows, cols, sym_normalized_values(rows, cols, sims.reshape(-1), n)


def max_pool_edges(edges: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], n: int):
    """(rows, cols, values) of the union of the graphs' edges, each the max of the values of the
    graphs holding it (MMRec's max_pool_fusion; each graph holds an edge at most once)."""
    rows = torch.cat([e[0] for e in edges])
    cols = torch.cat([e[1] for e in edges])
    values = torch.cat([e[2] for e in edges])
    keys, slot = torch.unique(rows * n + cols, return_inverse=True)  # [E'], [E]
    pooled = torch.zeros(keys.numel(), dtype=values.dtype, device=values.device)
    pooled = pooled.scatter_reduce_(0, slot, values, reduce="amax", include_self=False)  # [E']
    return keys // n, keys % n, pooled


def edges_to_csr(edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor], n: int) -> torch.Tensor:
    rows, cols, values = edges
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False)
    return to_csr(coo)


# --- the spectrum ---------------------------------------------------------------------------------
def spectral_filter(spectrum: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """[rows, n] inverse orthonormal real FFT of spectrum [rows, n//2+1] times a complex filter
    given as [1, n//2+1, 2] reals (MMRec's complex weight layout)."""
    return torch.fft.irfft(spectrum * torch.view_as_complex(weight), n=n, dim=1, norm="ortho")


def spectrum_fusion(
    projected: dict[str, torch.Tensor], filters: nn.ParameterDict
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({modality: [I, d] denoised}, [I, d] fused): MMRec's spectrum_convolution for the
    modalities present; the fusion spectrum is the product of their spectra."""
    d = next(iter(projected.values())).shape[1]
    spectra = {m: torch.fft.rfft(x, dim=1, norm="ortho") for m, x in projected.items()}  # [I, d//2+1] complex
    denoised = {m: spectral_filter(s, filters[m], d) for m, s in spectra.items()}  # [I, d] each
    product = None
    for s in spectra.values():
        product = s if product is None else product * s
    return denoised, spectral_filter(product, filters[FUSION], d)


def info_nce_rows(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B] -log softmax of each row's own pair over the batch, on cosine similarities / temperature."""
    a, b = F.normalize(view1, dim=1), F.normalize(view2, dim=1)  # [B, d] each
    logits = (a / temperature) @ b.T  # [B, B]
    return torch.logsumexp(logits, dim=1) - logits.diagonal()


def mmrec_id_embeddings(n_users: int, n_items: int, dim: int) -> tuple[nn.Parameter, nn.Parameter]:
    """User and item ID embeddings initialised as MMRec's: nn.Embedding's N(0, 1) draws for
    both, then Xavier-uniform for both (the same draws from torch's RNG, so a seed gives MMRec's
    initial values, every parameter being created in MMRec's order)."""
    users, items = torch.empty(n_users, dim).normal_(), torch.empty(n_items, dim).normal_()
    return nn.Parameter(nn.init.xavier_uniform_(users)), nn.Parameter(nn.init.xavier_uniform_(items))


def gate(dim: int) -> nn.Linear:
    """The linear part of MMRec's Sequential(Linear(d, d), Sigmoid())."""
    return nn.Linear(dim, dim)


def query(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, dim, bias=False))


@register("smore")
class SMORE(Recommender):
    display_name = "SMORE"
    Config = SMOREConfig
    uses_features = True
    train_propagate_equals_eval = False  # dropout on the preference gates in training

    def __init__(self, inputs: ModelInputs, config: SMOREConfig):
        super().__init__(inputs, config)
        d = config.embedding_size
        self.n_layers, self.n_ui_layers, self.dropout_rate = config.n_layers, config.n_ui_layers, config.dropout_rate
        self.reg_weight, self.cl_weight, self.temperature = config.reg_weight, config.cl_loss, config.temperature
        present = present_modalities(inputs)
        self.modalities = [m for m in MODALITY_ORDER if m in present]
        views = [*self.modalities, FUSION]
        self.user_emb, self.item_emb = mmrec_id_embeddings(self.n_users, self.n_items, d)
        # Trainable raw features: MMRec loads them with from_pretrained(freeze=False).
        self.raw_feat = nn.ParameterDict({m: nn.Parameter(present[m].detach().clone()) for m in self.modalities})
        self.feat_proj = nn.ModuleDict({m: nn.Linear(present[m].shape[1], d) for m in self.modalities})
        self.query = nn.ModuleDict({m: query(d) for m in self.modalities})  # attention from the fusion view
        self.item_gate = nn.ModuleDict({v: gate(d) for v in views})  # denoised features gate the item IDs
        self.prefer_gate = nn.ModuleDict({v: gate(d) for v in views})  # behavioural preference per view
        self.spectral = nn.ParameterDict({v: nn.Parameter(torch.randn(1, d // 2 + 1, 2)) for v in views})
        knn_k = {"image": config.image_knn_k, "text": config.text_knn_k}
        self._register_item_graphs(present, knn_k)
        self._register_user_item_graph(inputs)

    def _register_item_graphs(self, present: dict[str, torch.Tensor], knn_k: dict[str, int]) -> None:
        edges = {m: modality_knn_edges(present[m], knn_k[m]) for m in self.modalities}
        edges[FUSION] = max_pool_edges(list(edges.values()), self.n_items)
        for view, view_edges in edges.items():
            adj = edges_to_csr(view_edges, self.n_items)
            self.register_buffer(f"item_adj_{view}", adj, persistent=False)
            self.register_buffer(f"item_adj_t_{view}", transpose_csr(adj), persistent=False)  # kNN is directed

    def _register_user_item_graph(self, inputs: ModelInputs) -> None:
        norm = sym_norm_bipartite_adj(inputs.train_matrix()).tocsr()
        user_item = norm[: self.n_users, self.n_users :]  # MMRec's R: the normalised user-item block
        self.register_buffer("norm_adj", to_torch_sparse(norm, inputs.device), persistent=False)
        self.register_buffer("user_item", to_torch_sparse(user_item, inputs.device), persistent=False)
        self.register_buffer("item_user", to_torch_sparse(user_item.T.tocsr(), inputs.device), persistent=False)

    # --- the forward pass -------------------------------------------------------------------------
    def item_graph(self, view: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"item_adj_{view}"), getattr(self, f"item_adj_t_{view}")

    def spectral_views(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({modality: [I, d]}, [I, d]): the denoised modalities and their spectral fusion."""
        projected = {m: self.feat_proj[m](self.raw_feat[m]) for m in self.modalities}  # [I, d] each
        return spectrum_fusion(projected, self.spectral)

    def item_item_views(self) -> dict[str, torch.Tensor]:
        """{view: [U+I, d]}: gated item IDs propagated on the view's item graph, users = R @ items."""
        denoised, fused = self.spectral_views()
        features = denoised | {FUSION: fused}
        items = []
        for view, x in features.items():
            h = self.item_emb * torch.sigmoid(self.item_gate[view](x))  # [I, d]
            adj, adj_t = self.item_graph(view)
            for _ in range(self.n_layers):
                h = sparse_matmul(adj, h, adj_t)  # [I, d]
            items.append(h)
        users = sparse_matmul(self.user_item, torch.cat(items, dim=1), self.item_user)  # [U, V d]
        d = self.item_emb.shape[1]
        return {
            view: torch.cat([users[:, j * d : (j + 1) * d], items[j]], dim=0)  # [U+I, d]
            for j, view in enumerate(features)
        }

    def preference_gate(self, view: str, content: torch.Tensor) -> torch.Tensor:
        weight = torch.sigmoid(self.prefer_gate[view](content))  # [U+I, d]
        if self.dropout_rate > 0:
            weight = F.dropout(weight, self.dropout_rate, training=self.training)
        return weight

    def side_embeddings(self, views: dict[str, torch.Tensor], content: torch.Tensor) -> torch.Tensor:
        """[U+I, d] the modality-aware preference module: mean of the attended, gated views."""
        fusion = views[FUSION]
        total = torch.zeros_like(content)
        for m in self.modalities:
            attention = torch.softmax(self.query[m](fusion), dim=-1)  # [U+I, d]
            total = total + self.preference_gate(m, content) * (attention * views[m])
        total = total + self.preference_gate(FUSION, content) * fusion
        return total / len(views)

    def propagate(self) -> Embeddings:
        views = self.item_item_views()
        ego = torch.cat([self.user_emb, self.item_emb], dim=0)  # [U+I, d]
        content = propagate_mean(self.norm_adj, ego, self.n_ui_layers)  # [U+I, d]
        side = self.side_embeddings(views, content)  # [U+I, d]
        out = content + side
        extras = {"side": side, "content": content}
        return Embeddings(users=out[: self.n_users], items=out[self.n_users :], extras=extras)

    # --- the loss ---------------------------------------------------------------------------------
    def sample_losses(self, emb, users, pos, neg):
        u, p, n = emb.users[users], emb.items[pos], emb.items[neg]  # [B, d] each
        bpr = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1))  # [B]
        squared_norms = 0.5 * (u.pow(2).sum(-1) + p.pow(2).sum(-1) + n.pow(2).sum(-1))  # [B]
        side, content = emb.extras["side"], emb.extras["content"]
        item_rows = pos + self.n_users
        contrast = info_nce_rows(side[item_rows], content[item_rows], self.temperature) + info_nce_rows(
            side[users], content[users], self.temperature
        )  # [B]
        return bpr + self.reg_weight * squared_norms + self.cl_weight * contrast
