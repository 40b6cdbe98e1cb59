"""Import the LATTICE / MICRO JSON split format as an ID-only dataset.

`train.json`, `val.json`, `test.json` map a user index (string) to a list of item
indices; optional `user2id.json` / `item2id.json` map raw ids to those indices. There are
no timestamps or ratings: they are written as 0 and 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from guider.data.format.dataset import TEST, TRAIN, VALID, Dataset, DatasetError, check_name

SPLIT_FILES = {TRAIN: "train.json", VALID: "val.json", TEST: "test.json"}
SPLIT_LABELS = {TRAIN: "train", VALID: "valid", TEST: "test"}


def read_lattice(src: str | Path, name: str | None = None) -> Dataset:
    """Read a LATTICE split folder into a Dataset (no features)."""
    src = Path(src)
    frames = [_read_split(src / fname, label) for label, fname in SPLIT_FILES.items()]
    inter = pd.concat(frames, ignore_index=True)
    n_users, n_items = _sizes(src, inter)
    meta = {
        "source": {"format": "lattice", "path": str(src)},
        "n_users": n_users,
        "n_items": n_items,
        "features": {},
    }
    return Dataset(check_name(name or src.name, f"{src} (pass --name)"), n_users, n_items, inter, meta=meta)


def _read_split(path: Path, label: int) -> pd.DataFrame:
    if not path.exists():
        raise DatasetError(f"{path}: missing split file (a LATTICE folder has train.json, val.json, test.json)")
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(mapping, dict):
        raise DatasetError(f"{path}: expected an object mapping user index -> list of item indices")
    users, items = [], []
    for user, its in mapping.items():
        if not isinstance(its, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in its):
            raise DatasetError(f"{path}: user {user!r} must map to a list of integer item indices, got {its!r}"[:300])
        if not user.strip().lstrip("-").isdigit():
            raise DatasetError(f"{path}: user key {user!r} is not an integer index")
        users.extend([int(user)] * len(its))
        items.extend(its)
    n = len(users)
    if n == 0:
        raise DatasetError(f"{path}: the {SPLIT_LABELS[label]} split holds no interaction; every split needs some")
    return pd.DataFrame(
        {"userID": users, "itemID": items, "rating": [1] * n, "timestamp": [0] * n, "x_label": [label] * n}
    )


def _sizes(src: Path, inter: pd.DataFrame) -> tuple[int, int]:
    sizes = []
    for col, fname in (("userID", "user2id.json"), ("itemID", "item2id.json")):
        path = src / fname
        n = _map_size(path) if path.exists() else int(inter[col].max()) + 1
        if inter[col].min() < 0 or inter[col].max() >= n:
            raise DatasetError(f"{src}: {col} outside 0..{n - 1} (size from {fname if path.exists() else 'max id'})")
        sizes.append(n)
    return sizes[0], sizes[1]


def _map_size(path: Path) -> int:
    try:
        mapping = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(mapping, (dict, list)):
        raise DatasetError(f"{path}: expected an object mapping raw ids to indices")
    return len(mapping)
