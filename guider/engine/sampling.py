"""Uniform negative sampling that excludes each user's train positives, vectorised."""

from __future__ import annotations

import numpy as np


class NegativeSampler:
    """Draws, for each given user, one item uniformly among the items the user has not trained on.

    Positives are kept as sorted int64 keys user*n_items+item; a draw is checked with one
    `searchsorted` and only the collisions are redrawn, so cost is O(B log N) per batch.

    `candidates` restricts the draw to those item ids (e.g. the items seen in training, as
    MMRec's loader draws from); None draws from the whole catalogue.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int, candidates: np.ndarray | None = None):
        self.n_items = int(n_items)
        self.keys = np.unique(users.astype(np.int64) * self.n_items + items.astype(np.int64))
        self.candidates = None if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
        if self.candidates is not None and (
            len(self.candidates) == 0 or self.candidates[0] < 0 or self.candidates[-1] >= self.n_items
        ):
            raise ValueError(f"negative candidates must be a non-empty set of item ids in [0, {self.n_items})")
        pool = self.n_items if self.candidates is None else len(self.candidates)
        positives = self.keys
        if self.candidates is not None:
            positives = self.keys[np.isin(self.keys % self.n_items, self.candidates)]
        per_user = np.bincount(positives // self.n_items)
        if len(per_user) and per_user.max() >= pool:
            full = int(np.argmax(per_user))
            kind = "items" if self.candidates is None else "candidate items"
            raise ValueError(f"user {full} has interacted with all {pool} {kind}; no negative exists")

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[len(users)] negative item ids for `users`."""
        neg = self._draw(len(users), rng)
        todo = np.nonzero(self.is_positive(users, neg))[0]
        while len(todo):
            neg[todo] = self._draw(len(todo), rng)
            todo = todo[self.is_positive(users[todo], neg[todo])]
        return neg

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if self.candidates is None:
            return rng.integers(0, self.n_items, size=size, dtype=np.int64)
        return self.candidates[rng.integers(0, len(self.candidates), size=size, dtype=np.int64)]
