"""The CSR sparse-dense product used by every graph backbone: values and gradients against
dense float64 references."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from guider.models.graph import propagate_mean, sparse_matmul, to_torch_sparse, transpose_csr


def random_sparse(n_rows, n_cols, density, seed):
    return sp.random(n_rows, n_cols, density=density, random_state=seed, format="coo", dtype=np.float64)


def test_to_torch_sparse_is_csr_and_keeps_values():
    mat = random_sparse(7, 5, 0.4, 0)
    adj = to_torch_sparse(mat, torch.device("cpu"))
    assert adj.layout == torch.sparse_csr
    np.testing.assert_allclose(adj.to_dense().numpy(), mat.toarray(), atol=1e-7)


def test_transpose_csr_equals_dense_transpose():
    mat = random_sparse(6, 9, 0.3, 1)
    adj = to_torch_sparse(mat, torch.device("cpu"))
    np.testing.assert_allclose(transpose_csr(adj).to_dense().numpy(), mat.toarray().T, atol=1e-7)


def test_sparse_matmul_value_and_gradient_match_dense_float64():
    mat = random_sparse(8, 5, 0.5, 2)
    adj = to_torch_sparse(mat, torch.device("cpu")).to(torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(8, 3, dtype=torch.float64)
    out = sparse_matmul(adj, x, transpose_csr(adj))
    (out * weights).sum().backward()
    dense = adj.to_dense()  # the float32-rounded values, in float64
    np.testing.assert_allclose(out.detach().numpy(), (dense @ x.detach()).numpy(), atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), (dense.T @ weights).numpy(), atol=1e-12)


def test_sparse_matmul_passes_gradcheck():
    mat = random_sparse(6, 4, 0.5, 3)
    adj = to_torch_sparse(mat, torch.device("cpu")).to(torch.float64)
    adj_t = transpose_csr(adj)
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: sparse_matmul(adj, v, adj_t), (x,))


def test_propagate_mean_matches_dense_layers_with_gradient():
    upper = random_sparse(5, 5, 0.5, 4).toarray()
    symmetric = upper + upper.T
    adj = to_torch_sparse(sp.coo_matrix(symmetric), torch.device("cpu")).to(torch.float64)
    ego = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    got = propagate_mean(adj, ego, 2)
    dense = adj.to_dense()
    expected = (ego + dense @ ego + dense @ (dense @ ego)) / 3
    np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), atol=1e-12)
    (grad_got,) = torch.autograd.grad(got.pow(2).sum(), ego)
    (grad_expected,) = torch.autograd.grad(expected.pow(2).sum(), ego)
    np.testing.assert_allclose(grad_got.numpy(), grad_expected.numpy(), atol=1e-10)


@pytest.mark.parametrize("symmetric", [True, False])
def test_missing_transpose_is_only_right_for_symmetric(symmetric):
    """sparse_matmul(adj, x) assumes adj^T = adj: the gradient is wrong otherwise (documented)."""
    mat = random_sparse(4, 4, 0.6, 5).toarray()
    mat = mat + mat.T if symmetric else np.triu(mat, 1) + np.eye(4)
    adj = to_torch_sparse(sp.coo_matrix(mat), torch.device("cpu")).to(torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(sparse_matmul(adj, x).sum(), x)
    expected = adj.to_dense().T @ torch.ones(4, 2, dtype=torch.float64)
    assert np.allclose(grad.numpy(), expected.numpy()) is symmetric
