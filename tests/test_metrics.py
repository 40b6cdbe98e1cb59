"""Full-ranking metrics against a naive per-user float64 reference and hand-made cases."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from guider.engine.metrics import evaluable_users, evaluate, topk_stable


def naive_metrics(scores, target_sets, mask_sets, ks):
    """Per-user loop in float64 with Python sorting: (-score, item id) order."""
    out = {}
    for u, targets in target_sets.items():
        ranked = sorted(
            (i for i in range(scores.shape[1]) if i not in mask_sets.get(u, set())),
            key=lambda i: (-float(scores[u, i]), i),
        )
        for k in ks:
            rel = [1.0 if i in targets else 0.0 for i in ranked[:k]]
            hits = sum(rel)
            ideal = min(len(targets), k)
            dcg = sum(r / math.log2(pos + 2) for pos, r in enumerate(rel))
            idcg = sum(1 / math.log2(pos + 2) for pos in range(ideal))
            ap = sum(sum(rel[: p + 1]) / (p + 1) * rel[p] for p in range(len(rel)))
            vals = {"recall": hits / len(targets), "ndcg": dcg / idcg, "precision": hits / k, "map": ap / ideal}
            for name, value in vals.items():
                out.setdefault(f"{name}@{k}", {})[u] = value
    return out


def to_csr(sets, n_users, n_items):
    rows = [u for u, s in sets.items() for _ in s]
    cols = [i for s in sets.values() for i in s]
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


@pytest.mark.parametrize("chunk", [3, 1000])
def test_matches_naive_reference_with_ties(chunk):
    rng = np.random.default_rng(0)
    n_users, n_items, ks = 40, 60, (5, 10, 20, 50)
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # many ties
    train = {u: set(rng.choice(n_items, rng.integers(0, 8), replace=False).tolist()) for u in range(n_users)}
    target = {}
    for u in range(n_users):
        free = [i for i in range(n_items) if i not in train[u]]
        target[u] = set(rng.choice(free, rng.integers(0, 6), replace=False).tolist())
    target_m, train_m = to_csr(target, n_users, n_items), to_csr(train, n_users, n_items)
    result = evaluate(lambda users: torch.from_numpy(scores)[users], target_m, train_m, ks=ks, chunk_size=chunk)
    expected_users = [u for u in range(n_users) if target[u] and train[u]]
    assert result.users.tolist() == expected_users
    ref = naive_metrics(scores, {u: target[u] for u in expected_users}, train, ks)
    for key, per_user in ref.items():
        np.testing.assert_allclose(result.per_user[key], [per_user[u] for u in expected_users], rtol=1e-12, atol=1e-12)


def test_hand_made_case():
    # one user, 6 items; item 0 is trained (masked); targets {1, 4}
    scores = torch.tensor([[9.0, 1.0, 5.0, 5.0, 3.0, 0.0]])
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0]], dtype=np.float32))
    target = sp.csr_matrix(np.array([[0, 1, 0, 0, 1, 0]], dtype=np.float32))
    res = evaluate(lambda u: scores[u], target, train, ks=(1, 3, 5))
    # ranking without item 0: 2 (5.0), 3 (5.0, tie -> lower id first), 4 (3.0), 1 (1.0), 5
    m = {k: float(v[0]) for k, v in res.per_user.items()}
    assert m["recall@1"] == 0.0 and m["recall@3"] == 0.5 and m["recall@5"] == 1.0
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m["map@5"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_topk_stable_breaks_ties_by_lower_id():
    scores = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.5], [3.0, 3.0, 3.0, 3.0, 3.0]])
    assert topk_stable(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert topk_stable(scores, 4).tolist() == [[1, 2, 3, 0], [0, 1, 2, 3]]


def test_valid_items_not_masked_and_users_without_train_skipped():
    target = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0]], dtype=np.float32))
    train = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32))
    assert evaluable_users(target, train).tolist() == [0]


def test_nan_scores_raise():
    target = sp.csr_matrix(np.array([[0, 1, 0]], dtype=np.float32))
    train = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))
    with pytest.raises(FloatingPointError):
        evaluate(lambda u: torch.full((len(u), 3), float("nan")), target, train, ks=(1,))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_one_non_finite_score_among_finite_ones_raises(bad):
    rng = np.random.default_rng(1)
    scores = torch.from_numpy(rng.normal(size=(5, 30)).astype(np.float32))
    scores[3, 17] = bad
    target = to_csr({u: {u} for u in range(5)}, 5, 30)
    train = to_csr({u: {u + 10} for u in range(5)}, 5, 30)
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        evaluate(lambda u: scores[u].clone(), target, train, ks=(5,))


def test_minus_inf_is_a_score_and_the_callers_tensor_is_untouched():
    """-inf is the lowest score (ranked last, ties by id), not an error; a score_fn returning a
    view of its own tensor gets it back unmasked."""
    full = torch.tensor([[float("-inf"), 1.0, 2.0, float("-inf")], [0.0, 1.0, 2.0, 3.0]])
    before = full.clone()
    target = to_csr({0: {0}, 1: {0}}, 2, 4)
    train = to_csr({0: {2}, 1: {3}}, 2, 4)
    res = evaluate(lambda u: full[u], target, train, ks=(1, 2, 3))
    assert torch.equal(full, before)
    m = {k: v.tolist() for k, v in res.per_user.items()}
    # user 0 ranks 1, then 0 and 3 tied at -inf (id order): item 0 at rank 2; user 1 ranks 2, 1, 0
    assert m["recall@1"] == [0.0, 0.0] and m["recall@2"] == [1.0, 0.0] and m["recall@3"] == [1.0, 1.0]


def test_unsorted_csr_indices_and_users_without_targets():
    """Split matrices whose column indices are not sorted within rows give the same result."""
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 4, size=(30, 25)).astype(np.float32)
    train = {u: set(rng.choice(25, 4, replace=False).tolist()) for u in range(30)}
    target = {
        u: set(rng.choice([i for i in range(25) if i not in train[u]], u % 4, replace=False).tolist())
        for u in range(30)
    }
    sorted_t, sorted_m = to_csr(target, 30, 25), to_csr(train, 30, 25)
    shuffled = []
    for mat in (sorted_t, sorted_m):
        m = mat.copy()
        for r in range(m.shape[0]):
            lo, hi = m.indptr[r], m.indptr[r + 1]
            m.indices[lo:hi] = m.indices[lo:hi][::-1].copy()
        m.has_sorted_indices = False
        shuffled.append(m)
    a = evaluate(lambda u: torch.from_numpy(scores)[u], sorted_t, sorted_m, chunk_size=7)
    b = evaluate(lambda u: torch.from_numpy(scores)[u], *shuffled, chunk_size=7)
    assert a.users.tolist() == b.users.tolist() and len(a.users) < 30
    for key in a.per_user:
        np.testing.assert_array_equal(a.per_user[key], b.per_user[key])


def mmrec_map_loop(hits: np.ndarray, n_target: np.ndarray) -> np.ndarray:
    """MMRec's MAP rule (its src/utils/metrics.py `map_`), one user and one rank at a time:
    the sum of P@i x rel_i up to rank k divided by min(k, min(|T_u|, max K))."""
    n_users, max_k = hits.shape
    out = np.zeros((n_users, max_k))
    for u in range(n_users):
        length = min(int(n_target[u]), max_k)
        total = 0.0
        for k in range(1, max_k + 1):
            total += hits[u, :k].sum() / k * hits[u, k - 1]
            out[u, k - 1] = total / min(k, length)
    return out


def test_map_is_mmrecs_so_map_columns_compare_with_mmrec_papers():
    from guider.engine.metrics import _metrics_from_hits

    rng = np.random.default_rng(3)
    hits = rng.random((60, 50)) < 0.15
    n_target = rng.integers(1, 90, 60)  # some users with more targets than max K
    ours = _metrics_from_hits(torch.tensor(hits), torch.tensor(n_target, dtype=torch.float64), [5, 10, 20, 50])
    reference = mmrec_map_loop(hits, n_target)
    for k in (5, 10, 20, 50):
        assert np.allclose(ours[f"map@{k}"].numpy(), reference[:, k - 1], rtol=0, atol=1e-12)
