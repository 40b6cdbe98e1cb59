"""Read and write the MMRec-compatible dataset folder (protocol.md, "On-disk dataset format").

Layout: `<name>.inter` (tab-separated, header `userID itemID rating timestamp x_label`,
extra columns allowed), `text_feat.npy`, `image_feat.npy` (float32, row i = item i) and
`dataset.json` (counts, provenance, encoders). A folder downloaded from MMRec's shared
drive (no `dataset.json`, extra id-mapping files) loads as it is.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from guider.atomic import write_json
from guider.data.dataset import REQUIRED_COLUMNS, SPLIT_NAMES, TRAIN, Dataset, DatasetError

log = logging.getLogger(__name__)
FEATURE_FILES = {"text_feat": "text_feat.npy", "image_feat": "image_feat.npy"}


def load_dataset(folder: str | Path, *, drop_cold_eval: bool = True) -> Dataset:
    """Load and validate a dataset folder; raise DatasetError naming the file and the problem.

    Valid/test rows of users with no train interaction are dropped (MMRec does the same)
    and their count is recorded in `meta["dropped_cold_eval_rows"]`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: dataset folder does not exist")
    inter_path = _find_inter_file(folder)
    meta = read_dataset_meta(folder)
    inter = _read_inter(inter_path)
    n_users, n_items = _check_ids(inter, inter_path, meta)
    _check_splits(inter, inter_path)
    if drop_cold_eval:
        inter, dropped = _drop_cold_eval_rows(inter)
        meta["dropped_cold_eval_rows"] = dropped
        if dropped:
            log.warning("%s: dropped %d valid/test rows of users with no train items", inter_path, dropped)
    feats = {key: _read_features(folder / fname, n_items) for key, fname in FEATURE_FILES.items()}
    name = meta.get("name") or inter_path.stem
    return Dataset(name, n_users, n_items, inter.reset_index(drop=True), meta=meta, **feats)


def save_dataset(ds: Dataset, folder: str | Path) -> Path:
    """Write `ds` as an MMRec-compatible folder, atomically (a temp folder renamed at the end)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        ds.inter.to_csv(tmp / f"{ds.name}.inter", sep="\t", index=False)
        for key, fname in FEATURE_FILES.items():
            feat = getattr(ds, key)
            if feat is not None:
                np.save(tmp / fname, np.ascontiguousarray(feat, dtype=np.float32))
        meta = {**ds.meta, "name": ds.name, "statistics": ds.statistics()}
        meta.pop("dropped_cold_eval_rows", None)
        write_json(tmp / "dataset.json", meta)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def _find_inter_file(folder: Path) -> Path:
    found = sorted(folder.glob("*.inter"))
    if not found:
        raise DatasetError(f"{folder}: no '<name>.inter' interaction file")
    if len(found) > 1:
        raise DatasetError(f"{folder}: several .inter files ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def read_dataset_meta(folder: Path) -> dict:
    """The folder's dataset.json as a dict ({} when absent); invalid JSON is a DatasetError."""
    path = folder / "dataset.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err


def _read_inter(path: Path) -> pd.DataFrame:
    try:
        inter = pd.read_csv(path, sep="\t")
    except Exception as err:  # pandas raises several types for malformed text
        raise DatasetError(f"{path}: cannot parse as a tab-separated table ({err})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in inter.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected header {' '.join(REQUIRED_COLUMNS)}")
    for col in ("userID", "itemID", "x_label"):
        if inter[col].isna().any() or not pd.api.types.is_integer_dtype(inter[col]):
            raise DatasetError(f"{path}: column {col} must hold integers with no missing values")
    return inter


def _check_ids(inter: pd.DataFrame, path: Path, meta: dict) -> tuple[int, int]:
    sizes = []
    for col, key in (("userID", "users"), ("itemID", "items")):
        ids = inter[col].to_numpy()
        if len(ids) == 0:
            raise DatasetError(f"{path}: the table is empty")
        if ids.min() < 0:
            raise DatasetError(f"{path}: negative {col} {ids.min()}")
        declared = meta.get("statistics", {}).get(key, meta.get(f"n_{key}"))
        n = int(declared) if declared is not None else int(ids.max()) + 1
        if ids.max() >= n:
            raise DatasetError(f"{path}: {col} {ids.max()} out of range (dataset.json declares {n} {key})")
        n_present = len(np.unique(ids))
        if n_present != n:
            raise DatasetError(
                f"{path}: {col} not contiguous: {n_present} distinct ids but they span 0..{n - 1}; re-index them"
            )
        sizes.append(n)
    return sizes[0], sizes[1]


def _check_splits(inter: pd.DataFrame, path: Path) -> None:
    labels = set(np.unique(inter["x_label"].to_numpy()).tolist())
    unknown = labels - set(SPLIT_NAMES)
    if unknown:
        raise DatasetError(f"{path}: x_label values {sorted(unknown)} not in 0/1/2 (train/valid/test)")
    for label, name in SPLIT_NAMES.items():
        if label not in labels:
            raise DatasetError(f"{path}: missing split '{name}' (no row with x_label={label})")


def _drop_cold_eval_rows(inter: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    train_users = np.unique(inter.loc[inter["x_label"] == TRAIN, "userID"].to_numpy())
    cold = (inter["x_label"].to_numpy() != TRAIN) & ~np.isin(inter["userID"].to_numpy(), train_users)
    return inter[~cold], int(cold.sum())


def _read_features(path: Path, n_items: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        feat = np.load(path, allow_pickle=False)
    except Exception as err:
        raise DatasetError(f"{path}: cannot read as a .npy array ({err})") from err
    if feat.ndim != 2:
        raise DatasetError(f"{path}: expected a 2-D [items, dim] array, got shape {feat.shape}")
    if feat.shape[0] != n_items:
        raise DatasetError(f"{path}: {feat.shape[0]} feature rows but the dataset has {n_items} items")
    bad = ~np.isfinite(feat)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DatasetError(f"{path}: {bad.sum()} NaN/inf values in {len(rows)} item rows (first: {rows[:5].tolist()})")
    return feat.astype(np.float32, copy=False)
