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


# --- kNN graphs, normalisation, the user-user graph: against dense float64 loops -------------
def dense_knn(x: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """(neighbour index sets, the matching similarities) by a full float64 similarity matrix."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sim, order, axis=1)


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("block_rows", [None, 1, 3])
def test_knn_neighbours_match_a_dense_float64_search(exclude_self, block_rows):
    from guider.models.graph import knn_neighbours

    x = np.random.default_rng(5).normal(size=(17, 6))
    got_idx, got_sim = knn_neighbours(torch.tensor(x), 4, exclude_self=exclude_self, block_rows=block_rows)
    want_idx, want_sim = dense_knn(x, 4, exclude_self)
    assert [set(r) for r in got_idx.tolist()] == [set(r) for r in want_idx.tolist()]
    np.testing.assert_allclose(np.sort(got_sim.numpy(), 1), np.sort(want_sim, 1), atol=1e-6)
    if not exclude_self:
        assert (got_idx[:, 0] == torch.arange(17)).all()  # an item is its own nearest neighbour
    else:
        assert not (got_idx == torch.arange(17)[:, None]).any()


@pytest.mark.parametrize("weighted", [False, True])
def test_knn_graph_and_sym_normalize_match_dense_float64(weighted):
    from guider.models.graph import knn_graph, sym_normalize

    x = np.random.default_rng(6).normal(size=(12, 5))
    idx, sim = dense_knn(x, 3, exclude_self=False)
    dense = np.zeros((12, 12))
    for i in range(12):
        dense[i, idx[i]] = sim[i] if weighted else 1.0
    degree = dense.sum(1) + 1e-7
    expected = dense / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]
    got = sym_normalize(knn_graph(torch.tensor(x), 3, weighted=weighted)).to_dense().double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def naive_user_graph(pairs: list[tuple[int, int]], n_users: int, k: int) -> dict[int, list[tuple[int, int]]]:
    """MMRec's script, as a loop: common items of two users' item sets, self excluded, top k
    (ties: lower user id)."""
    items = {u: {i for v, i in pairs if v == u} for u in range(n_users)}
    graph = {}
    for u in range(n_users):
        shared = [(v, len(items[u] & items[v])) for v in range(n_users) if v != u and items[u] & items[v]]
        graph[u] = sorted(shared, key=lambda vc: (-vc[1], vc[0]))[:k]
    return graph


@pytest.mark.parametrize("block_entries", [1 << 24, 1, 20])
def test_user_cooccurrence_topk_matches_mmrecs_loop(block_entries):
    from guider.models.graph import user_cooccurrence_topk

    rng = np.random.default_rng(7)
    n_users, n_items = 11, 9
    pairs = [(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, 45), rng.integers(0, n_items, 45))]
    pairs.append(pairs[0])  # a repeated interaction counts once, as MMRec's item sets
    users, items = np.array(pairs).T
    train = sp.csr_matrix((np.ones(len(pairs)), (users, items)), shape=(n_users, n_items))
    got = user_cooccurrence_topk(train, 3, block_entries=block_entries)
    assert got.shape == (n_users, n_users)
    expected = naive_user_graph(pairs, n_users, 3)
    for u in range(n_users):
        row = got.getrow(u)
        mine = sorted(zip(row.indices.tolist(), row.data.astype(int).tolist()), key=lambda vc: (-vc[1], vc[0]))
        assert mine == expected[u], u
    with pytest.raises(ValueError, match="k >= 1"):
        user_cooccurrence_topk(train, 0)


@pytest.mark.slow
def test_user_cooccurrence_topk_is_sparse_on_a_clothing_sized_graph():
    """39,387 users x 23,033 items x ~7 interactions (Clothing's size): done by blocks, never a
    dense users x users matrix (which would need 6.2 GB in float32)."""
    from guider.models.graph import user_cooccurrence_topk

    rng = np.random.default_rng(8)
    n_users, n_items, n = 39_387, 23_033, 278_677
    popularity = 1.0 / (np.arange(n_items) + 50.0)  # top item ~900 interactions, as in Sports
    items = rng.choice(n_items, n, p=popularity / popularity.sum())
    train = sp.csr_matrix((np.ones(n), (rng.integers(0, n_users, n), items)), shape=(n_users, n_items))
    graph = user_cooccurrence_topk(train, 10)
    assert graph.shape == (n_users, n_users) and graph.nnz <= 10 * n_users
    assert np.diff(graph.indptr).max() <= 10 and (graph.diagonal() == 0).all()
