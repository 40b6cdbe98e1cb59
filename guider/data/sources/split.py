"""The protocol's seeded per-user train/valid/test split (docs/specification.md, Protocol, Processing step 4).

Each user's interactions are shuffled, then: users with n < 10 interactions get n-2
train, 1 valid, 1 test; the others get int(0.2 n) evaluation rows, of which half
(floor) go to valid and the rest to test. Users with fewer than 3 interactions cannot
give one row to each split and keep all of them in train (a 5-core dataset has none).

The shuffle is vectorised: rows are first put in a canonical order (user, timestamp,
item), so the result does not depend on the input row order; one seeded permutation of
all rows then gives each row a random key, and a user's shuffle is the order of its
rows by that key. This is an independent uniform shuffle per user.
"""

from __future__ import annotations

import numpy as np

from guider.data.format.dataset import TEST, TRAIN, VALID

SMALL_USER = 10  # users below this many interactions get exactly 1 valid + 1 test row
EVAL_FRACTION = 0.2


def split_counts(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_train, n_valid) per user for interaction counts `n` (test = the rest)."""
    n = np.asarray(n, dtype=np.int64)
    n_eval = np.where(n < SMALL_USER, 2, (EVAL_FRACTION * n).astype(np.int64))
    n_valid = np.where(n < SMALL_USER, 1, n_eval // 2)
    too_few = n < 3
    n_eval = np.where(too_few, 0, n_eval)
    n_valid = np.where(too_few, 0, n_valid)
    return n - n_eval, n_valid


def shuffle_keys(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, seed: int) -> np.ndarray:
    """A random key per row; a user's rows ordered by key are that user's seeded shuffle."""
    canonical = np.lexsort((items, timestamps, users))  # row ids in (user, time, item) order
    keys = np.empty(len(users), dtype=np.int64)
    keys[canonical] = np.random.default_rng(seed).permutation(len(users))
    return keys


def split_per_user(users, items, timestamps, seed: int) -> np.ndarray:
    """x_label (0 train / 1 valid / 2 test) of every row, in the input row order."""
    users, items, timestamps = (np.asarray(a) for a in (users, items, timestamps))
    if not (len(users) == len(items) == len(timestamps)):
        raise ValueError(
            f"split_per_user: users/items/timestamps lengths differ ({len(users)}, {len(items)}, {len(timestamps)})"
        )
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    keys = shuffle_keys(users, items, timestamps, seed)
    order = np.lexsort((keys, users))  # grouped by user, shuffled within
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(users)])
    n_train, n_valid = split_counts(sizes)
    rank = np.arange(len(users)) - np.repeat(starts, sizes)  # position in the user's shuffle
    n_train_row, n_valid_row = np.repeat(n_train, sizes), np.repeat(n_valid, sizes)
    labels_sorted = np.where(rank < n_train_row, TRAIN, np.where(rank < n_train_row + n_valid_row, VALID, TEST))
    labels = np.empty(len(users), dtype=np.int64)
    labels[order] = labels_sorted
    return labels
