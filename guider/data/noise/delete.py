"""Noise kind `delete`: a uniform random fraction of the train rows removed, never a user's
last one (DA-MRS, KDD 2024, deletes interactions the same way); the removed rows are
stored beside the copy (noise_deleted.tsv). Nothing false is added, so nothing is labelled.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from guider.data.format.dataset import TRAIN, Dataset
from guider.data.noise.base import NoiseKind, register_noise_kind


@register_noise_kind
class DeleteNoise(NoiseKind):
    name = "delete"
    description = "round(ratio x |train|) train rows removed (never a user's last one)"
    ratio_below = 1.0
    labels_rows = False

    @classmethod
    def make(cls, ds, ratio, seed, options):
        out, deleted = delete_interactions(ds, ratio, seed)
        return out, {"noise_deleted": deleted}

    @classmethod
    def truth(cls, dataset, train_items):
        return None


def delete_interactions(ds: Dataset, ratio: float, seed: int) -> tuple[Dataset, pd.DataFrame]:
    """(a copy of `ds` without round(ratio * |train|) train rows, the removed rows).

    One train row per user, drawn at random, is protected; the removed rows are a uniform
    random subset of the others, so no user loses their last train interaction. Valid and
    test rows are untouched.
    """
    if not 0 <= ratio < 1 or not np.isfinite(ratio):
        raise ValueError(f"delete_interactions: ratio must be in [0, 1), got {ratio}")
    train_rows = np.flatnonzero(ds.inter["x_label"].to_numpy() == TRAIN)
    n_delete = int(round(ratio * len(train_rows)))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train_rows)
    _, first = np.unique(ds.inter["userID"].to_numpy()[shuffled], return_index=True)
    deletable = np.delete(shuffled, first)  # every train row but one per user
    if n_delete > len(deletable):
        raise ValueError(
            f"delete_interactions: {n_delete} train rows to delete but only {len(deletable)} can go without "
            f"emptying a user's train set ({len(first)} users); the ratio is too large"
        )
    deleted = np.sort(rng.choice(deletable, n_delete, replace=False))
    keep = np.ones(len(ds.inter), dtype=bool)
    keep[deleted] = False
    out = copy.copy(ds)
    out.inter = ds.inter[keep].reset_index(drop=True)
    out.meta = {**ds.meta, "noise": {"kind": "delete", "ratio": float(ratio), "seed": int(seed), "n_deleted": n_delete}}
    return out, ds.inter.iloc[deleted].reset_index(drop=True)
