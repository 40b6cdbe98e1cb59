"""The protocol's interaction processing, shared by every real dataset (docs/specification.md, Protocol, steps 1-4).

1. drop rows with a missing user, item or timestamp and duplicate (user, item, timestamp);
2. iterative k-core: every round removes, at once, the rows of all users and all items
   with fewer than k rows, until none is left (MMRec's `filter_by_k_core`; the result is
   the unique maximal k-core, whatever the order);
3. re-index users and items to 0..n-1 in order of first appearance (MMRec's id maps);
4. seeded per-user split (`guider.data.sources.split.split_per_user`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from guider.data.sources.split import split_per_user

RAW_COLUMNS = ("user", "item", "rating", "timestamp")


@dataclass
class Interactions:
    table: pd.DataFrame  # userID itemID rating timestamp x_label, ids contiguous from 0
    user_ids: np.ndarray  # raw id of user u at position u
    item_ids: np.ndarray  # raw id of item i at position i
    counts: dict[str, int] = field(default_factory=dict)  # rows read / dropped at each step

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def drop_missing_and_duplicates(raw: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """(clean rows, rows with a missing field, duplicate rows) of a raw user/item/rating/timestamp table."""
    complete = raw.dropna(subset=["user", "item", "timestamp"])
    unique = complete.drop_duplicates(subset=["user", "item", "timestamp"])
    return unique, len(raw) - len(complete), len(complete) - len(unique)


def k_core(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """The rows whose user and item both keep at least `k` rows (iterated to a fixed point)."""
    if k <= 1 or rows.empty:
        return rows
    users, items = pd.factorize(rows["user"])[0], pd.factorize(rows["item"])[0]
    keep = np.ones(len(rows), dtype=bool)
    while True:
        user_degree = np.bincount(users[keep], minlength=users.max() + 1)
        item_degree = np.bincount(items[keep], minlength=items.max() + 1)
        still = keep & (user_degree[users] >= k) & (item_degree[items] >= k)
        if still.sum() == keep.sum():
            return rows[keep]
        keep = still


def reindex(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user codes, item codes, raw user ids, raw item ids); codes follow first appearance."""
    user_codes, user_ids = pd.factorize(rows["user"], sort=False)
    item_codes, item_ids = pd.factorize(rows["item"], sort=False)
    return user_codes.astype(np.int64), item_codes.astype(np.int64), np.asarray(user_ids), np.asarray(item_ids)


def build_interactions(raw: pd.DataFrame, *, k: int, seed: int) -> Interactions:
    """Steps 1-4 on a raw table with columns user, item, rating, timestamp (in file order)."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"build_interactions: raw table lacks column(s) {missing}")
    clean, n_missing, n_duplicate = drop_missing_and_duplicates(raw)
    core = k_core(clean, k)
    if core.empty:
        raise ValueError(f"no interaction survives the {k}-core ({len(clean)} rows before it)")
    users, items, user_ids, item_ids = reindex(core)
    timestamps = core["timestamp"].to_numpy(np.int64)
    table = pd.DataFrame(
        {
            "userID": users,
            "itemID": items,
            "rating": core["rating"].to_numpy(np.float64),
            "timestamp": timestamps,
            "x_label": split_per_user(users, items, timestamps, seed),
        }
    )
    counts = {
        "rows_read": len(raw),
        "rows_missing_fields": n_missing,
        "rows_duplicate": n_duplicate,
        "rows_after_k_core": len(core),
    }
    return Interactions(table, user_ids, item_ids, counts)
