import numpy as np
import pytest

from guider.engine.sampling import NegativeSampler


def test_negatives_never_positive_and_roughly_uniform():
    rng = np.random.default_rng(0)
    n_items = 50
    users = np.repeat(np.arange(20), 10)
    items = np.concatenate([rng.choice(n_items, 10, replace=False) for _ in range(20)])
    sampler = NegativeSampler(users, items, n_items)
    positives = set(zip(users.tolist(), items.tolist()))
    query = np.repeat(np.arange(20), 2000)
    neg = sampler.sample(query, np.random.default_rng(1))
    assert not any((u, i) in positives for u, i in zip(query.tolist(), neg.tolist()))
    # each user's 40 allowed items are drawn uniformly: counts within 5 sigma of 50
    counts = np.bincount(neg[query == 0], minlength=n_items)
    allowed = counts[[i for i in range(n_items) if (0, i) not in positives]]
    assert len(allowed) == 40 and np.all(np.abs(allowed - 50) < 5 * np.sqrt(50))


def test_is_positive_matches_set_lookup():
    users = np.array([0, 0, 1, 2])
    items = np.array([1, 3, 0, 2])
    sampler = NegativeSampler(users, items, 4)
    grid_u, grid_i = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    got = sampler.is_positive(grid_u.ravel(), grid_i.ravel())
    expected = [(u, i) in {(0, 1), (0, 3), (1, 0), (2, 2)} for u, i in zip(grid_u.ravel(), grid_i.ravel())]
    assert got.tolist() == expected


def test_same_seed_same_negatives():
    sampler = NegativeSampler(np.array([0, 1]), np.array([0, 1]), 10)
    q = np.array([0, 1] * 50)
    assert np.array_equal(sampler.sample(q, np.random.default_rng(3)), sampler.sample(q, np.random.default_rng(3)))


def test_user_with_every_item_is_an_error():
    with pytest.raises(ValueError, match="user 0 has interacted with all 3 items"):
        NegativeSampler(np.array([0, 0, 0]), np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="user 0 has interacted with all 2 candidate items"):
        NegativeSampler(np.array([0, 0, 1]), np.array([0, 1, 2]), 4, candidates=np.array([0, 1]))
    with pytest.raises(ValueError, match="non-empty set of item ids"):
        NegativeSampler(np.array([0]), np.array([0]), 4, candidates=np.array([5]))


def test_candidates_restrict_the_draw_uniformly():
    users, items = np.array([0, 0, 1]), np.array([0, 1, 2])
    sampler = NegativeSampler(users, items, 10, candidates=np.array([1, 2, 3, 4]))
    draws = sampler.sample(np.repeat([0, 1], 4000), np.random.default_rng(0))
    first, second = draws[:4000], draws[4000:]
    assert set(first.tolist()) == {2, 3, 4} and set(second.tolist()) == {1, 3, 4}  # candidates minus positives
    counts = np.bincount(first, minlength=10)[[2, 3, 4]] / 4000
    assert np.allclose(counts, 1 / 3, atol=0.03)  # uniform among them
    plain = NegativeSampler(users, items, 10)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert plain.sample(np.array([0, 1]), rng_a).tolist() == plain.sample(np.array([0, 1]), rng_b).tolist()
