"""The seeded per-user split against a naive per-user loop and hand-computed counts."""

import numpy as np
import pytest

from guider.data.sources.split import split_per_user


def naive_split(users, items, timestamps, seed):
    """Reference: canonical (user, time, item) order, one seeded permutation, a loop per user."""
    n = len(users)
    canonical = sorted(range(n), key=lambda r: (users[r], timestamps[r], items[r]))
    perm = np.random.default_rng(seed).permutation(n)
    key = {row: int(perm[pos]) for pos, row in enumerate(canonical)}
    labels = [None] * n
    for user in set(users.tolist()):
        rows = sorted((r for r in range(n) if users[r] == user), key=lambda r: key[r])
        size = len(rows)
        if size < 3:
            n_train, n_valid = size, 0
        elif size < 10:
            n_train, n_valid = size - 2, 1
        else:
            n_eval = int(0.2 * size)
            n_train, n_valid = size - n_eval, n_eval // 2
        for pos, row in enumerate(rows):
            labels[row] = 0 if pos < n_train else (1 if pos < n_train + n_valid else 2)
    return np.array(labels)


def random_table(seed, n_users=60, max_per_user=30):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_per_user, n_users)
    users = np.repeat(rng.permutation(n_users), sizes)
    items = rng.integers(0, 500, len(users))
    timestamps = rng.integers(0, 50, len(users))  # many ties, resolved by item
    shuffle = rng.permutation(len(users))
    return users[shuffle], items[shuffle], timestamps[shuffle]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_matches_naive_loop(seed):
    users, items, timestamps = random_table(seed)
    got = split_per_user(users, items, timestamps, seed=seed + 100)
    np.testing.assert_array_equal(got, naive_split(users, items, timestamps, seed + 100))


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, (1, 0, 0)),
        (2, (2, 0, 0)),
        (3, (1, 1, 1)),
        (5, (3, 1, 1)),
        (9, (7, 1, 1)),
        (10, (8, 1, 1)),
        (15, (12, 1, 2)),
        (25, (20, 2, 3)),
        (49, (40, 4, 5)),
    ],
)
def test_hand_computed_counts(n, expected):
    users = np.zeros(n, dtype=np.int64)
    labels = split_per_user(users, np.arange(n), np.arange(n), seed=0)
    assert tuple(np.bincount(labels, minlength=3)) == expected


def test_independent_of_row_order():
    users, items, timestamps = random_table(3)
    labels = split_per_user(users, items, timestamps, seed=5)
    perm = np.random.default_rng(9).permutation(len(users))
    labels_perm = split_per_user(users[perm], items[perm], timestamps[perm], seed=5)
    np.testing.assert_array_equal(labels_perm, labels[perm])


def test_seed_controls_the_shuffle():
    users, items, timestamps = random_table(4)
    a = split_per_user(users, items, timestamps, seed=1)
    assert np.array_equal(a, split_per_user(users, items, timestamps, seed=1))
    assert not np.array_equal(a, split_per_user(users, items, timestamps, seed=2))


def test_shuffle_is_uniform_within_a_user():
    n, trials = 5, 2000
    users, items = np.zeros(n, dtype=np.int64), np.arange(n)
    test_counts = np.zeros(n)
    for seed in range(trials):
        test_counts += split_per_user(users, items, items, seed=seed) == 2
    # each row is the test row with probability 1/5: 400 +- 3 sd (sd ~ 17.9)
    assert np.all(np.abs(test_counts - trials / n) < 60), test_counts


def test_large_table_is_fast():
    import time

    rng = np.random.default_rng(0)
    n = 160_000
    users, items, timestamps = rng.integers(0, 19_445, n), rng.integers(0, 7_050, n), rng.integers(0, 10**9, n)
    start = time.perf_counter()
    labels = split_per_user(users, items, timestamps, seed=0)
    assert time.perf_counter() - start < 2.0
    assert labels.shape == (n,) and set(np.unique(labels)) == {0, 1, 2}


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="lengths differ"):
        split_per_user(np.zeros(3), np.zeros(2), np.zeros(3), seed=0)
