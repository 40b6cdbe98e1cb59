"""The 4096-d CNN image features published with the Amazon 2014 data (`image_features_<Category>.b`).

The file is a plain sequence of records: a 10-byte ASIN (ASCII) followed by 4096
little-endian float32 (He & McAuley's Caffe features, the ones MMRec's numbers were
computed with). It is memory-mapped, so only the ASINs and the wanted rows are read
even for the 20+ GB Clothing file. As in MMRec's script, a later record of the same
ASIN replaces an earlier one, and items without a record get the mean of the items
found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from guider.data.format.dataset import DatasetError

ASIN_BYTES = 10
CNN_DIM = 4096


def record_dtype(dim: int = CNN_DIM) -> np.dtype:
    return np.dtype([("asin", f"S{ASIN_BYTES}"), ("feature", "<f4", (dim,))])


def open_records(path: str | Path, dim: int = CNN_DIM) -> np.memmap:
    path = Path(path)
    record = record_dtype(dim)
    size = path.stat().st_size
    if size == 0 or size % record.itemsize:
        raise DatasetError(
            f"{path}: {size} bytes is not a whole number of {record.itemsize}-byte records "
            f"({ASIN_BYTES}-byte ASIN + {dim} float32); truncated, or not an image_features_<Category>.b file"
        )
    return np.memmap(path, dtype=record, mode="r")


def read_amazon_cnn(path: str | Path, asins: Sequence[str], dim: int = CNN_DIM) -> tuple[np.ndarray, list[int]]:
    """(float32 [len(asins), dim] features in `asins` order, indices of the items imputed with the mean)."""
    records = open_records(path, dim)
    row_of = {asin.decode("ascii", "replace"): row for row, asin in enumerate(records["asin"])}  # last one wins
    rows = np.array([row_of.get(asin, -1) for asin in asins], dtype=np.int64)
    found = rows >= 0
    if not found.any():
        raise DatasetError(
            f"{path}: none of the {len(asins)} items has a record; is this the file of the right category?"
        )
    features = np.empty((len(asins), dim), dtype=np.float32)  # [n, 4096]
    features[found] = records["feature"][rows[found]]
    missing = np.flatnonzero(~found)
    features[missing] = features[found].mean(axis=0, dtype=np.float64)
    return features, missing.tolist()
