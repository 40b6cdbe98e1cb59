"""Controlled noise for the robustness study (protocol.md, "Noise robustness"): the four
kinds the denoising literature uses, each applied to the train split only and recorded in
the copy (`meta["noise"]`: kind, ratio, seed and what was changed).

- `add` (`inject_noise`): false-positive interactions appended to train and labelled
  `is_noise=1`. Items are drawn in proportion to their train popularity ("popular",
  accidental clicks follow exposure) or uniformly ("uniform"). Users are drawn in
  proportion to their train count: active users produce proportionally more accidental
  clicks, and the per-user noise ratio stays close to `ratio` for everyone. A drawn pair
  is rejected when it is already a positive in any split or was drawn before.
- `delete` (`delete_interactions`): a uniform random fraction of the train rows removed,
  never a user's last one (DA-MRS, KDD 2024, deletes interactions the same way); the
  removed rows are returned so the copy can list them (noise_deleted.tsv).
- `modality` (`corrupt_modality`): the text or image feature (or both, with the same items
  and donors) of a fraction of items replaced by that of a random other item (DA-MRS's
  replaced modalities; the paper's misaligned modal content).
- `natural` (`label_natural`): for data with ratings, train interactions rated
  <= `max_noisy_rating` stay positives but are labelled noisy, as T-CE/R-CE (Wang et al.,
  MM 2021) treat low ratings; optionally valid/test keep only rows rated >=
  `eval_min_rating` (the one documented change to the evaluation splits).

`make_noisy_copy` dispatches on the kind. MMRec has no noise tooling; DA-MRS's scripts
add and delete interactions uniformly and swap modality features of random items.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from guider.data.dataset import TRAIN, Dataset

NOISE_KINDS = ("add", "delete", "modality", "natural")
NOISE_MODES = ("popular", "uniform")
MODALITIES = {"text": "text_feat", "image": "image_feat"}
MODALITY_CHOICES = (*MODALITIES, "both")
DEFAULT_MAX_NOISY_RATING = 2.0
_MAX_ROUNDS = 50


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


def corrupt_modality(ds: Dataset, fraction: float, modality: str, seed: int) -> Dataset:
    """A copy of `ds` where round(fraction * n_items) items get the `modality` feature
    ("text", "image", or "both": the same items and donors for each) of a random other item;
    the swapped items and their donors are recorded in meta["noise"] (kind "modality")."""
    if modality not in MODALITY_CHOICES:
        raise ValueError(
            f"corrupt_modality: unknown modality {modality!r}; choose one of {', '.join(MODALITY_CHOICES)}"
        )
    if not 0 <= fraction <= 1:
        raise ValueError(f"corrupt_modality: fraction must be in [0, 1], got {fraction}")
    keys = list(MODALITIES) if modality == "both" else [modality]
    missing = [key for key in keys if getattr(ds, MODALITIES[key]) is None]
    if missing:
        raise ValueError(f"corrupt_modality: dataset {ds.name!r} has no {' and '.join(missing)} features")
    if ds.n_items < 2:
        raise ValueError("corrupt_modality: needs at least 2 items")
    if (ds.meta.get("noise") or {}).get("kind") == "modality":
        raise ValueError(
            f"corrupt_modality: dataset {ds.name!r} is already a modality-noise copy; swapping again would lose the "
            "record of the first swap (use --modality both for text and image)"
        )
    rng = np.random.default_rng(seed)
    swapped = np.sort(rng.choice(ds.n_items, int(round(fraction * ds.n_items)), replace=False))
    donors = (swapped + rng.integers(1, ds.n_items, len(swapped))) % ds.n_items  # never itself
    out = copy.copy(ds)
    for key in keys:
        feat = getattr(ds, MODALITIES[key])
        new_feat = feat.copy()
        new_feat[swapped] = feat[donors]
        setattr(out, MODALITIES[key], new_feat)
    record = {
        "kind": "modality",
        "ratio": float(fraction),
        "seed": int(seed),
        "modality": modality,
        "items": swapped.tolist(),
        "donors": donors.tolist(),
    }
    out.meta = {**ds.meta, "noise": record}
    return out


def label_natural(
    ds: Dataset, max_noisy_rating: float = DEFAULT_MAX_NOISY_RATING, eval_min_rating: float | None = None
) -> Dataset:
    """A copy of `ds` whose train rows rated <= max_noisy_rating are labelled is_noise=1
    (they stay train positives); with eval_min_rating, valid and test keep only the rows
    rated >= eval_min_rating. Needs a rating column (Amazon's preparation keeps it)."""
    if "rating" not in ds.inter.columns:
        raise ValueError(
            f"label_natural: dataset {ds.name!r} has no rating column; natural noise needs the ratings "
            "(guider data prepare keeps them; MMRec's 3-column .inter files have none)"
        )
    rating = ds.inter["rating"].to_numpy(np.float64)
    train = ds.inter["x_label"].to_numpy() == TRAIN
    if np.isnan(rating[train]).any():
        raise ValueError(f"label_natural: dataset {ds.name!r} has train rows without a rating")
    noisy = train & (rating <= max_noisy_rating)
    inter = ds.inter.copy()
    inter["is_noise"] = noisy.astype(np.int64) | (inter["is_noise"].to_numpy() if "is_noise" in inter else 0)
    dropped = ~train & (rating < eval_min_rating) if eval_min_rating is not None else np.zeros_like(train)
    out = copy.copy(ds)
    out.inter = inter[~dropped].reset_index(drop=True)
    record = {
        "kind": "natural",
        "ratio": None,
        "seed": None,
        "max_noisy_rating": float(max_noisy_rating),
        "eval_min_rating": None if eval_min_rating is None else float(eval_min_rating),
        "n_noise": int(noisy.sum()),
        "n_eval_dropped": int(dropped.sum()),
    }
    out.meta = {**ds.meta, "noise": record}
    return out


def make_noisy_copy(
    ds: Dataset,
    kind: str,
    *,
    ratio: float | None = None,
    seed: int = 0,
    mode: str = "popular",
    modality: str = "both",
    max_noisy_rating: float = DEFAULT_MAX_NOISY_RATING,
    eval_min_rating: float | None = None,
) -> tuple[Dataset, dict[str, pd.DataFrame]]:
    """(the noisy copy, extra tables to store beside it: {"noise_deleted": rows} for delete)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISE_KINDS)}")
    if kind == "natural":
        if ratio is not None:
            raise ValueError("noise kind 'natural' takes no ratio (the ratings decide which rows are noisy)")
        return label_natural(ds, max_noisy_rating, eval_min_rating), {}
    if ratio is None:
        raise ValueError(f"noise kind {kind!r} needs a ratio")
    if kind == "add":
        return inject_noise(ds, ratio, seed, mode), {}
    if kind == "delete":
        out, deleted = delete_interactions(ds, ratio, seed)
        return out, {"noise_deleted": deleted}
    return corrupt_modality(ds, ratio, modality, seed), {}
