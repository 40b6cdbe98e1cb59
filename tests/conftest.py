"""Shared fixtures: small random datasets built in memory (tests read no data outside the repository)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from guider.data import Dataset, save_dataset
from guider.models import ModelInputs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


def make_dataset(n_users=30, n_items=40, per_user=8, features=True, seed=0, name="tiny") -> Dataset:
    """Users with `per_user` distinct items each: the last two are valid and test, the rest train.

    Items cluster into 4 groups and each user mostly picks from one group, so there is
    signal to learn; features follow the groups.
    """
    rng = np.random.default_rng(seed)
    groups = np.arange(n_items) % 4
    rows = []
    for u in range(n_users):
        g = u % 4
        weights = np.where(groups == g, 4.0, 1.0)
        items = rng.choice(n_items, per_user, replace=False, p=weights / weights.sum())
        labels = [0] * (per_user - 2) + [1, 2]
        rows += [(u, int(i), 5, 1000 + t, lab) for t, (i, lab) in enumerate(zip(items, labels))]
    inter = pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp", "x_label"])
    missing = sorted(set(range(n_items)) - set(inter["itemID"]))
    extra = [(u % n_users, i, 5, 999, 0) for u, i in enumerate(missing)]  # every item appears
    inter = pd.concat([inter, pd.DataFrame(extra, columns=inter.columns)], ignore_index=True)
    inter = inter.drop_duplicates(["userID", "itemID"]).reset_index(drop=True).astype("int64")
    text = image = None
    if features:
        centers = rng.normal(size=(4, 16))
        text = (centers[groups] + 0.3 * rng.normal(size=(n_items, 16))).astype(np.float32)
        image = (np.repeat(centers[groups], 2, axis=1) + 0.3 * rng.normal(size=(n_items, 32))).astype(np.float32)
    return Dataset(name, n_users, n_items, inter, text_feat=text, image_feat=image, meta={"source": "test"})


def random_inputs(
    n_users: int,
    n_items: int,
    text_dim: int,
    image_dim: int,
    *,
    text: bool = True,
    image: bool = True,
    seed: int = 0,
    per_user: tuple[int, int] = (3, 6),
    scale: tuple[float, float] = (1.0, 1.0),
) -> ModelInputs:
    """Tiny random train set for model tests: each user has per_user[0] to per_user[1] - 1
    distinct items, the first pair is duplicated, the last item is unseen; Gaussian features
    (times `scale`) of the given widths, present where `text` / `image` say so."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items - 1, size=rng.integers(*per_user), replace=False)  # item n_items-1 unseen
        users += [u] * len(chosen)
        items += list(chosen)
    users.append(users[0])
    items.append(items[0])  # a duplicated interaction
    gen = torch.Generator().manual_seed(seed)
    return ModelInputs(
        n_users=n_users,
        n_items=n_items,
        train_users=np.array(users, dtype=np.int64),
        train_items=np.array(items, dtype=np.int64),
        text_feat=scale[0] * torch.randn(n_items, text_dim, generator=gen) if text else None,
        image_feat=scale[1] * torch.randn(n_items, image_dim, generator=gen) if image else None,
    )


def run_config(backbone="bpr", method="none", seed=0, **sections):
    """A resolved RunConfig with some sections overridden (dicts), e.g. tce={"max_rate": 0.3}."""
    from guider.config import resolve_run_config

    return resolve_run_config(backbone, method=method, seed=seed, overrides=sections)


@pytest.fixture
def tiny_dataset():
    return make_dataset()


@pytest.fixture
def tiny_folder(tmp_path):
    return save_dataset(make_dataset(), tmp_path / "tiny")
