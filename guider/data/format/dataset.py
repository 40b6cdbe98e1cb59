"""The in-memory dataset every part of the suite shares.

A `Dataset` is the content of one MMRec-compatible folder: an interaction table with
the columns `userID itemID x_label` (x_label 0/1/2 = train/valid/test; `rating`,
`timestamp` and extra columns such as `is_noise` optional, as in MMRec's loader),
optional per-item text and image features, and a metadata dict (`dataset.json`). Ids
are contiguous 0..n-1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}
REQUIRED_COLUMNS = ("userID", "itemID", "x_label")  # what MMRec's loader reads
OPTIONAL_COLUMNS = ("rating", "timestamp")  # written by the suite's preparation, not needed to train
MMREC_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")  # MMRec's published files, in order
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a dataset name is a file name: no '/', no '..'


class DatasetError(ValueError):
    """A dataset folder or table is malformed; the message names the file and the problem."""


def check_name(name: object, where: str) -> str:
    """`name` if it is a safe dataset (and file) name, else DatasetError naming `where`."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise DatasetError(
            f"{where}: dataset name {name!r} is not a safe file name (1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit); it names the .inter file, so it may not hold a path"
        )
    return name


@dataclass
class Dataset:
    name: str
    n_users: int
    n_items: int
    inter: pd.DataFrame
    text_feat: np.ndarray | None = None  # [n_items, d_text] float32
    image_feat: np.ndarray | None = None  # [n_items, d_image] float32
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) int64 arrays of one split, in table order."""
        rows = self.inter[self.inter["x_label"].to_numpy() == label]
        return rows["userID"].to_numpy(np.int64), rows["itemID"].to_numpy(np.int64)

    def matrix(self, label: int) -> sp.csr_matrix:
        """Binary user x item CSR matrix of one split (duplicates collapsed)."""
        users, items = self.split(label)
        mat = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat

    @property
    def train_noise_labels(self) -> np.ndarray | None:
        """`is_noise` of the train rows (table order), or None when the dataset has no labels."""
        if "is_noise" not in self.inter.columns:
            return None
        rows = self.inter[self.inter["x_label"].to_numpy() == TRAIN]
        return rows["is_noise"].to_numpy().astype(bool)

    @property
    def has_features(self) -> bool:
        return self.text_feat is not None or self.image_feat is not None

    def statistics(self) -> dict[str, Any]:
        counts = self.inter["x_label"].value_counts()
        n = len(self.inter)
        return {
            "users": int(self.n_users),
            "items": int(self.n_items),
            "interactions": int(n),
            "train": int(counts.get(TRAIN, 0)),
            "valid": int(counts.get(VALID, 0)),
            "test": int(counts.get(TEST, 0)),
            "sparsity": float(1.0 - n / max(1, self.n_users * self.n_items)),
        }
