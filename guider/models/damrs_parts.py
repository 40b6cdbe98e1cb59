"""DA-MRS building blocks (Xv et al., "Improving Multi-modal Recommender Systems by Denoising
and Aligning Multi-modal Content and User Feedback", KDD 2024), shared by the DA-MRS backbone
(guider/models/damrs.py, MMRec's `DAMRS`) and the DA-MRS plug-in (guider/methods/damrs.py, the
authors' DA-MRS+MF-BPR / +VBPR / +LightGCN). Each does what the MMRec functions named beside
it do (the authors' code has the same functions), vectorised and sparse:

- `denoised_knn_graphs` (MMRec `get_knn_adj_mat`, the paper's denoised item-item graphs):
  per modality the cosine similarity of the raw features; a pair whose similarity is below
  the mean of ALL pairwise similarities (the item itself included) in EITHER modality is
  masked to 0 in every modality; each item keeps the `knn_k` largest masked similarities, or
  only its non-zero ones when the (text) row has at most `knn_k` of them (MMRec's
  `item_num <= knn_k` branch); the binary graph is D^-1/2 A D^-1/2 normalised (row sums +
  1e-7). No dense items x items matrix: the mean similarity is ||sum of unit rows||^2 / n^2
  and the masked top-k runs over blocks of rows.
- `behaviour_graph` (the authors' build_iib_graph.py + MMRec `get_session_adj`, the paper's
  item-item behaviour graph): items sharing at least `iib_min_users` train users, each item's
  `iib_topk` most shared neighbours, plus a self-loop. MMRec reads it from a pickled
  `item_graph_dict_2.npy`; here it is computed from the training interactions with sparse
  co-occurrence products. MMRec's normalisation puts ones on the edges (the shared-user counts
  only choose the neighbours), as here.
- `ItemGraphs`: those graphs as CSR buffers (and transposes, for the backward pass), and the
  propagation of an item embedding on each (`n_mm_layers` products, the last layer kept).
- `pseudo_labels`, `neighbour_discrimination_loss` (MMRec `label_prediction`,
  `generate_pesudo_labels`, `neighbor_discrimination`: the paper's alignment guided by graded
  item relations), `alignment_kl` (MMRec `KL`, the paper's alignment guided by user
  preference), `feedback_weights` and `denoised_bpr` (MMRec `get_weight_modal` and `bpr_loss`:
  the paper's denoised BPR).

Differences from MMRec, none changing the numbers beyond float rounding:
- the mean similarity is computed in float64 from the float32 unit rows (MMRec: the float32
  mean of the dense matrix), so a pair within float32 rounding of the mean may fall on the
  other side of the mask; feature rows of zero norm get zero similarities (MMRec: NaN);
- behaviour graph: ties at the `iib_topk` cut go to the lower item id (build_iib_graph.py:
  torch.topk's unspecified order); its unused PageRank is not computed;
- label prediction, pseudo labels and neighbour discrimination run in blocks of rows and
  share one cosine product per view and block (MMRec computes the product twice, with
  autograd graphs for both); the pseudo labels are top-k indices, without gradient in MMRec
  too; a view's multi-view score is summed as (all views' probabilities) + its own, MMRec's
  (the others') + its own + its own, the same up to float rounding of near-exact ties; the
  discrimination's gradient is written out (a custom autograd function, checked against
  autograd through MMRec's code in the tests);
- log(sigmoid(x)) is `logsigmoid(x)`, and the symmetric Bernoulli KL
  KL(p, q) + KL(q, p) with p = sigmoid(a), q = sigmoid(b) is its closed form (p - q)(a - b):
  the same function and gradient, without the -inf / NaN of log(0) when a sigmoid saturates;
- the batch's unique users and items are sorted (MMRec: `unique(sorted=False)`); every loss
  term is a mean over them, so their order does not matter.
One modality also works (MMRec needs both): the graphs and views are those of the modalities
present, the pseudo labels of a view sum the other views' probabilities plus twice its own.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from guider.models.graph import sparse_matmul, sym_normalize, to_csr, transpose_csr, user_cooccurrence_topk

VIEW_ORDER = ("text", "image", "behaviour")  # MMRec's t, v, s: sums of views run in this order
PSEUDO_POSITIVES = 10  # MMRec generate_pesudo_labels: topk(.., 10), hard-coded
TEMPERATURE = 0.2  # MMRec neighbor_discrimination's default temperature
_BLOCK_ELEMENTS = 1 << 24  # similarity entries held at once per modality (graph building)
_FUSED_BLOCK_ELEMENTS = 1 << 23  # similarity entries per view and block in the neighbour discrimination


# --- the denoised modality kNN graphs ------------------------------------------------------
def mean_cosine_similarity(unit: torch.Tensor) -> float:
    """Mean of all n^2 cosine similarities of the unit rows `unit` [n, d] (the diagonal
    included): sum_ij u_i . u_j = ||sum_i u_i||^2, so no n x n matrix is formed."""
    total = unit.double().sum(dim=0)  # [d]
    return float(total @ total) / unit.shape[0] ** 2


def denoised_knn_neighbours(
    modalities: dict[str, torch.Tensor], knn_k: int, block_rows: int | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{modality: (rows [E], cols [E])}: the edges of MMRec's masked kNN graphs.

    `modalities` maps "text"/"image" to raw features [n, d_m] (text first). The neighbour count
    of an item is the number of non-zero masked similarities of its first modality's row (text
    in MMRec), capped at `knn_k`; the same count is used for every modality, as in MMRec."""
    units = {m: F.normalize(f.detach().float(), dim=-1) for m, f in modalities.items()}  # [n, d_m]
    means = {m: mean_cosine_similarity(u) for m, u in units.items()}
    counting = next(iter(units))
    n = next(iter(units.values())).shape[0]
    k = min(knn_k, n)
    block_rows = block_rows or max(1, _BLOCK_ELEMENTS // max(n, 1))
    edges: dict[str, tuple[list, list]] = {m: ([], []) for m in units}
    for start in range(0, n, block_rows):
        sims = {m: u[start : start + block_rows] @ u.T for m, u in units.items()}  # [b, n] each
        masked = torch.zeros_like(sims[counting], dtype=torch.bool)  # [b, n]
        for m, sim in sims.items():
            masked |= sim < means[m]
        for sim in sims.values():
            sim.masked_fill_(masked, 0.0)
        keep = (sims[counting] != 0).sum(dim=1).clamp(max=k)  # [b] MMRec: item_num, or knn_k
        kept = torch.arange(k, device=keep.device)[None, :] < keep[:, None]  # [b, k]
        rows = torch.arange(start, start + len(keep), device=keep.device)[:, None].expand(-1, k)  # [b, k]
        for m, sim in sims.items():
            cols = sim.topk(k, dim=1).indices  # [b, k], sorted: the kept ones come first
            edges[m][0].append(rows[kept])
            edges[m][1].append(cols[kept])
    return {m: (torch.cat(r), torch.cat(c)) for m, (r, c) in edges.items()}


def binary_sym_normalized(rows: torch.Tensor, cols: torch.Tensor, n: int) -> torch.Tensor:
    """Sparse COO [n, n] D^-1/2 A D^-1/2 of the binary graph with edges (rows, cols), D = row
    sums + 1e-7 (MMRec's `compute_normalized_laplacian`, which puts ones on the edges)."""
    ones = torch.ones(rows.numel(), device=rows.device)
    adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), ones, (n, n), check_invariants=False)
    return sym_normalize(adj)


def denoised_knn_graphs(modalities: dict[str, torch.Tensor], knn_k: int) -> dict[str, torch.Tensor]:
    """{modality: sparse COO [n, n] normalised denoised kNN graph} (MMRec `get_knn_adj_mat`)."""
    n = next(iter(modalities.values())).shape[0]
    edges = denoised_knn_neighbours(modalities, knn_k)
    return {m: binary_sym_normalized(rows, cols, n) for m, (rows, cols) in edges.items()}


# --- the item-item behaviour graph ---------------------------------------------------------
def behaviour_neighbours(train: sp.csr_matrix, topk: int, min_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows [E], cols [E]): each item's (at most) `topk` other items sharing the most distinct
    train users with it, among those sharing at least `min_users` (build_iib_graph.py:
    `inter_len >= 2`, then `torch.topk` per row); ties go to the lower item id.

    Taking the top-k before the threshold gives the same edges: entries below the threshold
    never outrank one above it."""
    item_user = (train > 0).T.tocsr()  # [n_items, n_users]
    top = user_cooccurrence_topk(item_user, topk).tocoo()  # [n_items, n_items] shared-user counts
    strong = top.data >= min_users
    return top.row[strong].astype(np.int64), top.col[strong].astype(np.int64)


def behaviour_graph(train: sp.csr_matrix, topk: int, min_users: int, device: torch.device) -> torch.Tensor:
    """Sparse COO [n_items, n_items] normalised item-item behaviour graph with self-loops
    (MMRec `get_session_adj` on build_iib_graph.py's item_graph_dict)."""
    n_items = train.shape[1]
    rows, cols = behaviour_neighbours(train, topk, min_users)
    loops = np.arange(n_items, dtype=np.int64)
    rows = torch.from_numpy(np.concatenate([loops, rows])).to(device)  # [n_items + E]
    cols = torch.from_numpy(np.concatenate([loops, cols])).to(device)
    return binary_sym_normalized(rows, cols, n_items)


# --- the graphs as buffers, and propagation ------------------------------------------------
class ItemGraphs(nn.Module):
    """DA-MRS's item-item graphs, one per view in VIEW_ORDER: the denoised kNN graph of each
    modality present and the behaviour graph. CSR buffers, kept out of checkpoints."""

    def __init__(
        self,
        modalities: dict[str, torch.Tensor],
        train: sp.csr_matrix,
        *,
        knn_k: int,
        iib_topk: int,
        iib_min_users: int,
        device: torch.device,
    ):
        super().__init__()
        if not modalities:
            raise ValueError("DA-MRS needs text or image features; the dataset has none")
        graphs = denoised_knn_graphs(modalities, knn_k)
        graphs["behaviour"] = behaviour_graph(train, iib_topk, iib_min_users, device)
        self.views = tuple(view for view in VIEW_ORDER if view in graphs)
        for view in self.views:
            adj = to_csr(graphs[view].to(device))
            self.register_buffer(f"{view}_adj", adj, persistent=False)
            self.register_buffer(f"{view}_adj_t", transpose_csr(adj), persistent=False)  # for the backward

    def adjacency(self, view: str) -> torch.Tensor:
        return getattr(self, f"{view}_adj")

    def propagate(self, items: torch.Tensor, n_layers: int) -> dict[str, torch.Tensor]:
        """{view: [n_items, d]} `items` multiplied `n_layers` times by each view's graph
        (MMRec's h_t, h_v, h_s: the last layer, no mean over layers)."""
        out = {}
        for view in self.views:
            adj, adj_t = getattr(self, f"{view}_adj"), getattr(self, f"{view}_adj_t")
            h = items
            for _ in range(n_layers):
                h = sparse_matmul(adj, h, adj_t)  # [n_items, d]
            out[view] = h
        return out


def view_mean(views: dict[str, torch.Tensor]) -> torch.Tensor:
    """[n_items, d] the views' mean, summed in VIEW_ORDER (MMRec's (h_t + h_v + h_s) / 3)."""
    total = None
    for h in views.values():
        total = h if total is None else total + h
    return total / len(views)


# --- alignment guided by graded item relations (neighbour discrimination) -----------------
def pseudo_labels(
    cosines: dict[str, torch.Tensor], block_rows: int | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{view: (multi-view positives [B, P], single-view positives [B, P])} (MMRec
    `label_prediction` + `generate_pesudo_labels`), P = PSEUDO_POSITIVES.

    `cosines[view]` [B, n] are the cosine similarities of the batch items to all items in that
    view. Probabilities are their row softmax; a view's multi-view positives are the top P of
    the other views' probabilities plus twice its own, its single-view positives the top P of
    its own probabilities once those P are zeroed. Rows are processed in blocks, without grad."""
    n_rows, n = next(iter(cosines.values())).shape
    block_rows = block_rows or max(1, _FUSED_BLOCK_ELEMENTS // max(n, 1))
    parts: dict[str, tuple[list, list]] = {view: ([], []) for view in cosines}
    with torch.no_grad():
        for start in range(0, n_rows, block_rows):
            block = {view: c[start : start + block_rows].detach() for view, c in cosines.items()}
            for view, (multi, single) in _block_labels(block).items():
                parts[view][0].append(multi)
                parts[view][1].append(single)
    return {view: (torch.cat(multi), torch.cat(single)) for view, (multi, single) in parts.items()}


class _NeighbourDiscrimination(torch.autograd.Function):
    """Mean over views and batch items of MMRec's `neighbor_discrimination` against the pseudo
    labels of `generate_pesudo_labels`, in blocks of rows: label prediction, pseudo labels and
    discrimination share one similarity product per view and block (MMRec computes it twice and
    keeps the autograd graphs of both [B, n_items] products), and the backward applies the
    closed-form gradient to each block's stored exp(cos / temperature): about half of MMRec's
    work. Inputs: per view the batch items' unit rows [B, d] and all unit rows [n, d]."""

    @staticmethod
    def forward(ctx, block_rows: int, temperature: float, views: tuple[str, ...], *tensors: torch.Tensor):
        rows, units = tensors[0::2], tensors[1::2]
        n_rows = rows[0].shape[0]
        labels = {view: ([], []) for view in views}
        coefs = {view: [] for view in views}
        sims: dict[str, list] = {view: [] for view in views}
        total_loss = rows[0].new_zeros(())
        for start in range(0, n_rows, block_rows):
            cosines = {view: r[start : start + block_rows] @ u.T for view, r, u in zip(views, rows, units)}  # [b, n]
            for view, (multi, single) in _block_labels(cosines).items():
                labels[view][0].append(multi)
                labels[view][1].append(single)
            for view in views:
                sim = cosines.pop(view).div_(temperature).exp_()  # [b, n] exp(cos / temperature)
                loss, coef = _discrimination_block(sim, labels[view][0][-1], labels[view][1][-1])
                total_loss += loss.sum()
                coefs[view].append(coef / temperature)  # d loss / d cos = d loss / d sim x sim / temperature
                sims[view].append(sim)
        ctx.block_rows, ctx.temperature, ctx.views, ctx.sims = block_rows, temperature, views, sims
        ctx.labels = {view: (torch.cat(multi), torch.cat(single)) for view, (multi, single) in labels.items()}
        ctx.coefs = {view: torch.cat(parts) for view, parts in coefs.items()}
        ctx.save_for_backward(*tensors)
        return total_loss / (n_rows * len(views))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        tensors = ctx.saved_tensors
        rows, units = tensors[0::2], tensors[1::2]
        n_rows = rows[0].shape[0]
        scale = grad / (n_rows * len(ctx.views))
        row_grads = [torch.zeros_like(r) for r in rows]
        unit_grads = [torch.zeros_like(u) for u in units]
        for index, start in enumerate(range(0, n_rows, ctx.block_rows)):
            block = slice(start, start + ctx.block_rows)
            for v, view in enumerate(ctx.views):
                r, sim = rows[v][block], ctx.sims[view][index]  # [b, d], [b, n] exp(cos / temperature)
                multi, single = (labels[block] for labels in ctx.labels[view])  # [b, P] each
                coef = ctx.coefs[view][block] * scale  # [b, 3] d loss / d cos per unit of (all, multi, single)
                at_multi = sim.gather(1, multi) * coef[:, 1:2]  # [b, P]
                at_single = sim.gather(1, single) * coef[:, 2:3]  # [b, P]
                d_cos = sim * coef[:, 0:1]  # [b, n]
                d_cos.scatter_add_(1, multi, at_multi).scatter_add_(1, single, at_single)
                row_grads[v][block] = d_cos @ units[v]  # [b, d]
                unit_grads[v].addmm_(d_cos.T, r)  # [n, d]
        grads = [g for pair in zip(row_grads, unit_grads) for g in pair]
        return (None, None, None, *grads)


def _block_labels(cosines: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{view: (multi-view [b, P], single-view [b, P] positives)} of one block of rows (MMRec
    label_prediction + generate_pesudo_labels): a view's multi-view score is the sum of all
    views' probabilities plus its own again (= the others' + twice its own)."""
    probs = {view: torch.softmax(c, dim=1) for view, c in cosines.items()}  # [b, n] each
    total = None
    for p in probs.values():
        total = p.clone() if total is None else total.add_(p)
    multis = {view: (total + p).topk(PSEUDO_POSITIVES, dim=1).indices for view, p in probs.items()}
    del total
    out = {}
    for view, p in probs.items():
        single = p.scatter_(1, multis[view], 0.0).topk(PSEUDO_POSITIVES, dim=1).indices  # [b, P]
        out[view] = (multis[view], single)
    return out


def _discrimination_block(
    sim: torch.Tensor, multi: torch.Tensor, single: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """([b] MMRec neighbor_discrimination terms, [b, 3] their derivatives w.r.t. the summed
    scores (all, multi, single)) of one block: -log(M / T + 1e-9) - log(S / (T - M) + 1e-9)."""
    total = sim.sum(dim=1)  # [b] T
    multi_score = sim.gather(1, multi).sum(dim=1)  # [b] M
    single_score = sim.gather(1, single).sum(dim=1)  # [b] S
    rest = total - multi_score
    a, b = multi_score / total, single_score / rest
    loss = -torch.log(a + 1e-9) - torch.log(b + 1e-9)
    d_a, d_b = -1.0 / (a + 1e-9), -1.0 / (b + 1e-9)
    d_total = -d_a * multi_score / total**2 - d_b * single_score / rest**2
    d_multi = d_a / total + d_b * single_score / rest**2
    d_single = d_b / rest
    return loss, torch.stack([d_total, d_multi, d_single], dim=1)


def neighbour_discrimination_loss(
    views: dict[str, torch.Tensor], items: torch.Tensor, block_rows: int | None = None
) -> torch.Tensor:
    """Mean over views of each view's discrimination of the batch items `items` [B] against all
    items (MMRec's neighbor_dis_loss: the softmax over all items of each batch item, as MMRec,
    in blocks of `block_rows` rows)."""
    n = next(iter(views.values())).shape[0]
    block_rows = block_rows or max(1, _FUSED_BLOCK_ELEMENTS // max(n, 1))
    tensors = []
    for h in views.values():
        unit = F.normalize(h, dim=1)  # [n, d]
        tensors += [unit[items], unit]  # [B, d], [n, d]
    return _NeighbourDiscrimination.apply(block_rows, TEMPERATURE, tuple(views), *tensors)


# --- alignment guided by user preference (KL) ---------------------------------------------
def alignment_kl(users: torch.Tensor, items: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """MMRec's KL_loss: mean over [U, I] of KL(p, q) + KL(q, p) for the Bernoulli p =
    sigmoid(users @ unit(items).T), q = sigmoid(users @ unit(content).T); in closed form
    (p - q)(a - b) of the logits a, b."""
    a = users @ F.normalize(items, dim=-1).T  # [U, I]
    b = users @ F.normalize(content, dim=-1).T  # [U, I]
    return ((torch.sigmoid(a) - torch.sigmoid(b)) * (a - b)).mean()


def alignment_losses(
    all_users: torch.Tensor,
    items: torch.Tensor,
    views: dict[str, torch.Tensor],
    content: torch.Tensor,
    users: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(neighbour discrimination, KL) of a batch: both over its distinct users and items
    (positives and negatives), as MMRec's calculate_loss."""
    batch_users = torch.unique(users)
    batch_items = torch.unique(torch.cat([pos, neg]))
    neighbour = neighbour_discrimination_loss(views, batch_items)
    kl = alignment_kl(all_users[batch_users], items[batch_items], content[batch_items])
    return neighbour, kl


# --- the denoised BPR ----------------------------------------------------------------------
def feedback_weights(
    users: torch.Tensor, views: dict[str, torch.Tensor], pos: torch.Tensor, neg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] positive weights, [B] negative weights), detached (MMRec `get_weight_modal`).

    With p_v = sigmoid(u . unit(h_v[i])) over the views v and n_v the same for the negative:
    pos weight = clamp(mean_v p_v * exp(-var_v p_v)^2, 0, 1) (unbiased variance); neg weight =
    clamp(max_v p_v - n_mean, 0, 1) where mean_v p_v < n_mean, else 0; n_mean is the mean of
    n_v over all views AND all triples of the batch (one scalar, as in MMRec)."""
    with torch.no_grad():
        p = torch.sigmoid(torch.stack([(users * F.normalize(h[pos], dim=-1)).sum(1) for h in views.values()]))  # [V, B]
        n = torch.sigmoid(torch.stack([(users * F.normalize(h[neg], dim=-1)).sum(1) for h in views.values()]))  # [V, B]
        p_mean, p_var, p_max = p.mean(dim=0), p.var(dim=0), p.max(dim=0).values  # [B] each
        n_mean = n.mean()  # scalar
        pos_weight = (p_mean * torch.exp(-p_var).pow(2.0)).clamp(0, 1)
        neg_weight = ((p_max - n_mean) * (p_mean < n_mean).to(p_max.dtype)).clamp(0, 1)
    return pos_weight, neg_weight


def denoised_bpr(
    pos_scores: torch.Tensor, neg_scores: torch.Tensor, pos_weight: torch.Tensor, neg_weight: torch.Tensor
) -> torch.Tensor:
    """[B] -(w+ log sigmoid(y+ - y-) + w- log sigmoid(y- - y+)) (MMRec `bpr_loss` before its mean)."""
    diff = pos_scores - neg_scores
    return -(F.logsigmoid(diff) * pos_weight + F.logsigmoid(-diff) * neg_weight)
