"""Write extracted features into a dataset folder and record them in its dataset.json."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

import numpy as np

from guider.data.format.mmrec import FEATURE_FILES, read_dataset_meta
from guider.runs.atomic import atomic_path, write_json

META_FILE = "dataset.json"


def check_item_count(folder: Path, n_items: int) -> None:
    """The content table must describe exactly the dataset's items."""
    declared = (read_dataset_meta(folder).get("statistics") or {}).get("items")
    if declared is not None and int(declared) != n_items:
        raise ValueError(f"{folder}: item_content.csv has {n_items} rows but dataset.json declares {declared} items")


def write_features(folder: Path, modality: str, features: np.ndarray, info: dict[str, Any]) -> Path:
    """Save `<modality>_feat.npy` atomically and record `info` under dataset.json features.<modality>."""
    if features.ndim != 2 or not np.isfinite(features).all():
        raise ValueError(f"{modality} features must be a finite 2-D array, got shape {features.shape}")
    path = folder / FEATURE_FILES[f"{modality}_feat"]
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(features, dtype=np.float32))
    with _meta_lock(folder):  # text and image jobs may finish at once: read-modify-write under a lock
        meta = read_dataset_meta(folder)
        meta.setdefault("features", {})[modality] = {**info, "file": path.name, "shape": list(features.shape)}
        write_json(folder / META_FILE, meta)
    return path


@contextlib.contextmanager
def _meta_lock(folder: Path):
    """Exclusive flock on the dataset folder itself (no lock file left among the outputs)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
