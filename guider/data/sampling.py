"""Uniform negative sampling that excludes each user's train positives, vectorised."""

from __future__ import annotations

import numpy as np


class NegativeSampler:
    """Draws, for each given user, one item uniformly among the items the user has not trained on.

    Positives are kept as sorted int64 keys user*n_items+item; a draw is checked with one
    `searchsorted` and only the collisions are redrawn, so cost is O(B log N) per batch.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int):
        self.n_items = int(n_items)
        self.keys = np.unique(users.astype(np.int64) * self.n_items + items.astype(np.int64))
        per_user = np.bincount(self.keys // self.n_items)
        if len(per_user) and per_user.max() >= self.n_items:
            full = int(np.argmax(per_user))
            raise ValueError(f"user {full} has interacted with all {self.n_items} items; no negative exists")

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[len(users)] negative item ids for `users`."""
        neg = rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        todo = np.nonzero(self.is_positive(users, neg))[0]
        while len(todo):
            neg[todo] = rng.integers(0, self.n_items, size=len(todo), dtype=np.int64)
            todo = todo[self.is_positive(users[todo], neg[todo])]
        return neg
