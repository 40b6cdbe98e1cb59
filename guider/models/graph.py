"""Graph utilities shared by graph backbones: normalised adjacency as torch sparse CSR
tensors and a sparse-dense product with an explicit backward.

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

# CSR is marked "beta" by PyTorch; the operations used here (CSR @ dense, conversions) are stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


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
