"""Graph building blocks shared by every backbone and plug-in that needs a graph, each
vectorised and sparse (no dense n x n matrix), each tested against a dense float64 reference
(tests/test_graph.py):

- item-item kNN graphs from features: `knn_neighbours` (blocked exact cosine top-k, the item
  itself included as in MMRec's FREEDOM/LATTICE, or excluded as AMSC needs), `knn_graph`
  (binary or similarity-weighted sparse adjacency) and `sym_normalize` (D^-1/2 A D^-1/2 with
  row-sum degrees + 1e-7, MMRec's `compute_normalized_laplacian`);
- the user-item bipartite graph: `sym_norm_bipartite_adj`, `bipartite_edge_norm`,
  `symmetric_bipartite`;
- the user-user co-interaction graph: `user_cooccurrence_topk` (what MMRec's DualGNN and
  DRAGON read from a `user_graph_dict.npy` made by a separate script);
- propagation: CSR tensors and a sparse-dense product with an explicit backward.

Why CSR and a custom backward: on CPU, `torch.sparse.mm` with a COO matrix is ~5x slower
than a CSR product, and autograd through a CSR product transposes the matrix on every
backward pass. Every adjacency here is either symmetric (the user-item graphs: A^T = A)
or has its transpose stored once, so the backward is one more CSR product.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

# CSR is marked "beta" by PyTorch; the operations used here (CSR @ dense, conversions) are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

_BLOCK_ELEMENTS = 1 << 24  # similarity (or co-occurrence) entries held at once


# --- item-item kNN graphs from features -----------------------------------------------------
def knn_neighbours(
    features: torch.Tensor, k: int, *, exclude_self: bool = False, block_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, k] indices, [n, k] cosine similarities) of each row's k most similar rows.

    Exact top-k computed `block_rows` rows at a time (memory O(block_rows x n)). With
    `exclude_self` a row is never its own neighbour (AMSC); otherwise it normally is its
    first one (MMRec's FREEDOM and LATTICE keep it)."""
    n = features.shape[0]
    limit = n - 1 if exclude_self else n
    if not 0 < k <= limit:
        raise ValueError(
            f"knn_k={k} must be in [1, {limit}] for {n} items" + (" (the item itself excluded)" if exclude_self else "")
        )
    unit = F.normalize(features.float(), dim=-1)  # [n, d]
    block_rows = block_rows or max(1, _BLOCK_ELEMENTS // n)
    indices, values = [], []
    for start in range(0, n, block_rows):
        sim = unit[start : start + block_rows] @ unit.T  # [b, n]
        if exclude_self:
            rows = torch.arange(sim.shape[0], device=sim.device)
            sim[rows, rows + start] = float("-inf")
        top = sim.topk(k, dim=1)
        indices.append(top.indices)
        values.append(top.values)
    return torch.cat(indices), torch.cat(values)  # [n, k], [n, k]


def knn_graph(features: torch.Tensor, k: int, *, weighted: bool = False, exclude_self: bool = False) -> torch.Tensor:
    """Sparse COO [n, n] kNN graph: row i has its k neighbours, value 1 (or the cosine similarity)."""
    n = features.shape[0]
    neighbours, sims = knn_neighbours(features, k, exclude_self=exclude_self)
    rows = torch.arange(n, device=features.device).repeat_interleave(k)  # [n k]
    values = sims.reshape(-1) if weighted else torch.ones(n * k, device=features.device)
    indices = torch.stack([rows, neighbours.reshape(-1)])
    return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=False).coalesce()


def sym_normalize(adj: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of a sparse COO matrix, D = row sums + eps (MMRec's normalised Laplacian)."""
    adj = adj.coalesce()
    rows, cols = adj.indices()
    degree = torch.zeros(adj.shape[0], device=adj.device).index_add_(0, rows, adj.values().float()) + eps
    inv_sqrt = degree.pow(-0.5)
    values = inv_sqrt[rows] * inv_sqrt[cols] * adj.values()
    return torch.sparse_coo_tensor(adj.indices(), values, adj.shape, check_invariants=False).coalesce()


# --- the user-user co-interaction graph -------------------------------------------------------
def user_cooccurrence_topk(train: sp.csr_matrix, k: int, block_entries: int = 1 << 23) -> sp.csr_matrix:
    """[n_users, n_users] CSR: row u holds the (at most) k other users sharing the most train
    items with u, valued by that count; ties go to the lower user id.

    This is the graph MMRec's DualGNN and DRAGON read from `user_graph_dict.npy`
    (preprocessing/dualgnn-gen-u-u-matrix.py: common items of two users' item sets, the user
    itself excluded, top-k per row, from a dense users x users matrix). Here it is sparse
    products over blocks of users, each block sized so that its co-occurrence entries (bounded
    by the sum of its users' item degrees) stay near `block_entries`; the real Clothing train split
    (39,387 users) takes about a second."""
    if k < 1:
        raise ValueError(f"the user graph needs k >= 1 neighbours, got {k}")
    binary = (train > 0).astype(np.int32).tocsr()  # repeated rows count once, as MMRec's sets
    transposed = binary.T.tocsr()
    parts = [
        _top_neighbours(binary[start:end] @ transposed, start, k) for start, end in _user_blocks(binary, block_entries)
    ]
    rows, cols, counts = (np.concatenate([part[i] for part in parts]) for i in range(3))
    n_users = binary.shape[0]
    return sp.csr_matrix((counts.astype(np.float32), (rows, cols)), shape=(n_users, n_users))


def _user_blocks(binary: sp.csr_matrix, budget: int) -> list[tuple[int, int]]:
    """(start, end) user ranges whose co-occurrence entries sum(degree of their items) ~ budget."""
    item_degree = np.asarray(binary.sum(axis=0)).ravel()
    bound = np.cumsum(binary @ item_degree)  # [U] running upper bound of the product's entries
    cuts = np.searchsorted(bound, np.arange(budget, bound[-1] + budget, budget) if len(bound) else [], side="right")
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, binary.shape[0]), [binary.shape[0]]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def _top_neighbours(block: sp.csr_matrix, start: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, counts) of each block row's top-k entries, its own user removed."""
    coo = block.tocoo()
    rows, cols, counts = coo.row.astype(np.int64) + start, coo.col.astype(np.int64), coo.data
    other = rows != cols
    rows, cols, counts = rows[other], cols[other], counts[other]
    order = np.lexsort((cols, -counts, rows))  # by row, then most shared items, then lower id
    rows, cols, counts = rows[order], cols[order], counts[order]
    first = np.searchsorted(rows, rows, side="left")  # index of each row's first entry
    keep = (np.arange(len(rows)) - first) < k
    return rows[keep], cols[keep], counts[keep]


# --- the user-item bipartite graph ---------------------------------------------------------


def bipartite_edge_norm(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """[E] 1/sqrt(d_u d_i) of each user-item edge, degrees counted over these edges (+1e-7)."""
    user_deg = torch.bincount(users, minlength=n_users).float() + 1e-7  # [n_users]
    item_deg = torch.bincount(items, minlength=n_items).float() + 1e-7  # [n_items]
    return user_deg[users].pow(-0.5) * item_deg[items].pow(-0.5)


def symmetric_bipartite(users: torch.Tensor, items: torch.Tensor, values: torch.Tensor, n_users: int, n_items: int):
    """Sparse [(U+I), (U+I)] adjacency holding each edge (u, i) and its mirror, both = value."""
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    size = (n_users + n_items, n_users + n_items)
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.cat([values, values]), size, check_invariants=False)
    return to_csr(coo)


def sym_norm_bipartite_adj(train: sp.csr_matrix) -> sp.coo_matrix:
    """D^-1/2 A D^-1/2 of the (users+items) bipartite graph built from a binary user x item matrix.

    As in LightGCN / MMRec, a 1e-7 is added to degrees so isolated nodes do not divide by zero.
    """
    n_users, n_items = train.shape
    adj = sp.bmat([[None, train], [train.T, None]], format="csr").astype(np.float32)
    deg = np.asarray((adj > 0).sum(axis=1)).ravel() + 1e-7
    inv_sqrt = sp.diags(np.power(deg, -0.5))
    return (inv_sqrt @ adj @ inv_sqrt).tocoo()


def to_torch_sparse(mat: sp.spmatrix, device: torch.device) -> torch.Tensor:
    """scipy sparse -> torch sparse CSR float32 tensor on `device` (duplicates summed)."""
    coo = mat.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return to_csr(torch.sparse_coo_tensor(indices, values, coo.shape, device=device, check_invariants=False))


def to_csr(adj: torch.Tensor) -> torch.Tensor:
    """A torch sparse COO (or CSR) matrix as a coalesced CSR matrix."""
    return adj if adj.layout == torch.sparse_csr else adj.coalesce().to_sparse_csr()


def transpose_csr(adj: torch.Tensor) -> torch.Tensor:
    """The transpose of a CSR matrix, itself in CSR (computed once, kept for backward passes)."""
    return adj.t().to_sparse_csr()  # .t() of a CSR matrix is CSC; convert back


class _SparseMatmul(torch.autograd.Function):
    """adj @ x with the gradient to x only: d x = adj^T @ d out (adj is never trained)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return None, None, ctx.adj_t @ grad_out


def sparse_matmul(adj: torch.Tensor, x: torch.Tensor, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """[n, d] adj @ x for a CSR `adj` [n, m]; `adj_t` its transpose (None: adj is symmetric)."""
    return _SparseMatmul.apply(adj, adj if adj_t is None else adj_t, x)


def propagate_mean(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN propagation on a symmetric CSR `adj`: the mean of ego and each of `n_layers`
    layers of adj @ x (a running sum: stacking the layers costs ~2x the time here)."""
    total, x = ego, ego
    for _ in range(n_layers):
        x = sparse_matmul(adj, x)
        total = total + x
    return total / (n_layers + 1)
