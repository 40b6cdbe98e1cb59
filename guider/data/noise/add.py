"""Noise kind `add`: false-positive interactions appended to train, labelled `is_noise=1`.

Items are drawn in proportion to their train popularity ("popular": accidental clicks
follow exposure) or uniformly ("uniform"). Users are drawn in proportion to their train
count: active users produce proportionally more accidental clicks, and the per-user noise
ratio stays close to `ratio` for everyone. A drawn pair is rejected when it is already a
positive in any split or was drawn before. (DA-MRS's scripts add interactions uniformly.)
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from guider.data.format.dataset import TRAIN, Dataset
from guider.data.noise.base import NoiseKind, register_noise_kind

NOISE_MODES = ("popular", "uniform")
_MAX_ROUNDS = 50


@register_noise_kind
class AddNoise(NoiseKind):
    name = "add"
    description = "round(ratio x |train|) false-positive pairs appended to train, labelled is_noise=1"
    options = {
        "mode": {
            "enum": list(NOISE_MODES),
            "default": "popular",
            "description": "items drawn in proportion to train popularity (popular) or uniformly",
        }
    }

    @classmethod
    def make(cls, ds, ratio, seed, options):
        return inject_noise(ds, ratio, seed, options.get("mode") or "popular"), {}


def inject_noise(ds: Dataset, ratio: float, seed: int, mode: str = "popular") -> Dataset:
    """A copy of `ds` with round(ratio * |train|) noisy train rows appended, labelled is_noise=1."""
    if mode not in NOISE_MODES:
        raise ValueError(f"inject_noise: unknown mode {mode!r}; choose one of {', '.join(NOISE_MODES)}")
    if not 0 <= ratio or not np.isfinite(ratio):
        raise ValueError(f"inject_noise: ratio must be a finite number >= 0, got {ratio}")
    inter = ds.inter.copy()
    if "is_noise" not in inter.columns:
        inter["is_noise"] = 0
    train_users, train_items = ds.split(TRAIN)
    n_noise = int(round(ratio * len(train_users)))
    rng = np.random.default_rng(seed)
    users, items = _draw_pairs(ds, train_users, train_items, n_noise, mode, rng)
    noise_rows = _noise_rows(inter, train_users, users, items, rng)
    out = copy.copy(ds)
    out.inter = pd.concat([inter, noise_rows], ignore_index=True)
    record = {"kind": "add", "ratio": float(ratio), "mode": mode, "seed": int(seed), "n_noise": int(n_noise)}
    out.meta = {**ds.meta, "noise": record}
    return out


def _draw_pairs(ds: Dataset, train_users, train_items, n_noise: int, mode: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """n_noise distinct (user, item) pairs that are not positives in any split."""
    user_p = _proportions(np.bincount(train_users, minlength=ds.n_users))
    item_counts = np.bincount(train_items, minlength=ds.n_items)
    item_p = _proportions(item_counts) if mode == "popular" else np.full(ds.n_items, 1.0 / ds.n_items)
    positives = np.unique(ds.inter["userID"].to_numpy(np.int64) * ds.n_items + ds.inter["itemID"].to_numpy(np.int64))
    if n_noise > ds.n_users * ds.n_items - len(positives):
        raise ValueError(
            f"inject_noise: {n_noise} noisy pairs requested but only "
            f"{ds.n_users * ds.n_items - len(positives)} non-positive pairs exist; the ratio is too large"
        )
    kept = np.zeros(0, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        missing = n_noise - len(kept)
        if missing <= 0:
            break
        size = 2 * missing + 16
        keys = rng.choice(ds.n_users, size, p=user_p) * ds.n_items + rng.choice(ds.n_items, size, p=item_p)
        keys = keys[~np.isin(keys, positives) & ~np.isin(keys, kept)]
        _, first = np.unique(keys, return_index=True)
        kept = np.r_[kept, keys[np.sort(first)][:missing]]
    if len(kept) < n_noise:
        raise ValueError(
            f"inject_noise: could only draw {len(kept)} of {n_noise} new (user, item) pairs; "
            f"the ratio is too large for a dataset of {ds.n_users} users x {ds.n_items} items"
        )
    return kept // ds.n_items, kept % ds.n_items


def _proportions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        raise ValueError("inject_noise: the dataset has no train interactions")
    return counts / total


def _noise_rows(inter: pd.DataFrame, train_users, users, items, rng) -> pd.DataFrame:
    """Rows for the drawn pairs: a timestamp inside the user's train activity window and a
    rating drawn from the train ratings, so a noisy row looks like any other (each only
    where the table has that column: MMRec's 3-column files have neither)."""
    train = inter[inter["x_label"].to_numpy() == TRAIN]
    rows = pd.DataFrame({"userID": users, "itemID": items})
    if "timestamp" in inter.columns:
        stamps = train.groupby("userID")["timestamp"].agg(["min", "max"])
        low, high = stamps["min"].reindex(users).to_numpy(), stamps["max"].reindex(users).to_numpy()
        timestamps = low + np.floor(rng.random(len(users)) * (high - low + 1))
        rows["timestamp"] = timestamps.astype(inter["timestamp"].dtype)
    if "rating" in inter.columns:
        rows["rating"] = rng.choice(train["rating"].to_numpy(), len(users)) if len(train) else np.ones(len(users))
    rows["x_label"] = TRAIN
    rows["is_noise"] = 1
    for col in inter.columns.difference(rows.columns):
        rows[col] = _neutral_value(inter[col])
    return rows[inter.columns].astype(inter.dtypes.to_dict())


def _neutral_value(column: pd.Series):
    """Fill value of an extra column on the new rows: 0 for numbers, missing otherwise."""
    return 0 if pd.api.types.is_numeric_dtype(column) else pd.NA
