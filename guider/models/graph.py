"""Graph utilities shared by graph backbones: normalised adjacency as torch sparse tensors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


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
    """scipy sparse -> coalesced torch sparse COO float32 tensor on `device`."""
    coo = mat.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(indices, values, coo.shape, device=device, check_invariants=False).coalesce()


def propagate_mean(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """LightGCN propagation: the mean of ego and each of `n_layers` layers of adj @ x."""
    layers = [ego]
    x = ego
    for _ in range(n_layers):
        x = torch.sparse.mm(adj, x)
        layers.append(x)
    return torch.stack(layers, dim=1).mean(dim=1)
