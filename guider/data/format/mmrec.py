"""Read and write the MMRec-compatible dataset folder (docs/specification.md, Protocol, "On-disk dataset format").

Layout: `<name>.inter` (tab-separated, header `userID itemID x_label` plus, as the suite
writes them, `rating timestamp` and extra columns such as `is_noise`), `text_feat.npy`,
`image_feat.npy` (float32, row i = item i; both optional: without them the dataset is
ID-only) and `dataset.json` (counts, provenance, encoders). A folder downloaded from
MMRec's shared drive (no `dataset.json`, extra id-mapping files, only the three columns
MMRec's loader reads) loads as it is.

Loading refuses what training cannot use (naming the file): malformed ids or splits, a
dataset name that is not a safe file name (it names the .inter file written next), feature
matrices that are not real, finite, 2-D with one row per item and at least one column, or
float64 values beyond float32's range. It warns, with counts, about what deflates metrics
silently: duplicate train rows and (user, item) pairs both in train and in valid or test.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from guider.data.format.dataset import (
    REQUIRED_COLUMNS,
    SPLIT_NAMES,
    TEST,
    TRAIN,
    VALID,
    Dataset,
    DatasetError,
    check_name,
)
from guider.runs.atomic import staging_dir, write_json

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
    _check_splits(inter, inter_path)
    n_users, n_items = _check_ids(inter, inter_path, meta)
    if drop_cold_eval:
        inter, dropped = _drop_cold_eval_rows(inter)
        meta["dropped_cold_eval_rows"] = dropped
        if dropped:
            log.warning("%s: dropped %d valid/test rows of users with no train items", inter_path, dropped)
    _warn_suspicious_rows(inter, inter_path)
    feats = {key: _read_features(folder / fname, n_items) for key, fname in FEATURE_FILES.items()}
    name = check_name(meta.get("name") or inter_path.stem, str(folder / "dataset.json"))
    return Dataset(name, n_users, n_items, inter.reset_index(drop=True), meta=meta, **feats)


def save_dataset(ds: Dataset, folder: str | Path, extra_tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write `ds` as an MMRec-compatible folder, atomically (a temp folder renamed at the end);
    each of `extra_tables` becomes `<name>.tsv` beside it (a noisy copy's deleted rows)."""
    folder = Path(folder)
    check_name(ds.name, f"writing {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(folder)
    try:
        ds.inter.to_csv(tmp / f"{ds.name}.inter", sep="\t", index=False)
        for table_name, table in (extra_tables or {}).items():
            table.to_csv(tmp / f"{check_name(table_name, 'extra table')}.tsv", sep="\t", index=False)
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


# dataset.json keys the loader reads, and the JSON types they must have
META_TYPES = {"name": str, "statistics": dict, "n_users": int, "n_items": int, "features": dict, "source": (dict, str)}


def read_dataset_meta(folder: Path) -> dict:
    """The folder's dataset.json as a dict ({} when absent); invalid JSON or a key of the
    wrong type is a DatasetError naming the file and the key."""
    path = Path(folder) / "dataset.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot be read ({err})") from err
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: must hold a JSON object (keys name, statistics, ...), got a {type(meta).__name__}")
    for key, kind in META_TYPES.items():
        if key in meta and meta[key] is not None and (not isinstance(meta[key], kind) or isinstance(meta[key], bool)):
            raise DatasetError(f"{path}: key {key!r} must be {_json_type(kind)}, got {meta[key]!r}")
    for key in ("users", "items"):
        value = (meta.get("statistics") or {}).get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise DatasetError(f"{path}: statistics.{key} must be a positive integer, got {value!r}")
    return meta


def _json_type(kind) -> str:
    names = {str: "a string", dict: "an object", int: "an integer"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names[k] for k in kinds)


def _read_inter(path: Path) -> pd.DataFrame:
    try:
        inter = pd.read_csv(path, sep="\t")
    except Exception as err:  # pandas raises several types for malformed text
        raise DatasetError(f"{path}: cannot parse as a tab-separated table ({err})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in inter.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {missing}; expected a header with {' '.join(REQUIRED_COLUMNS)} "
            "(rating, timestamp and others optional)"
        )
    if inter.empty:
        raise DatasetError(f"{path}: a header but no rows (the dataset holds no interaction)")
    for col in REQUIRED_COLUMNS:
        if inter[col].isna().any() or not pd.api.types.is_integer_dtype(inter[col]) or inter[col].dtype == bool:
            raise DatasetError(
                f"{path}: column {col} must hold integers with no missing values{_first_bad(inter[col])}"
            )
    return inter


def _first_bad(values: pd.Series) -> str:
    """'; line N holds ...' for the first value of a column that is not an integer ('' if none found)."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero((numbers.isna() | (numbers != numbers.round())).to_numpy())
    if not len(bad):
        return ""
    return f"; line {int(bad[0]) + 2} holds {values.iloc[bad[0]]!r} ({len(bad)} such line(s))"


def _check_ids(inter: pd.DataFrame, path: Path, meta: dict) -> tuple[int, int]:
    sizes = []
    for col, key in (("userID", "users"), ("itemID", "items")):
        ids = inter[col].to_numpy()
        if len(ids) == 0:
            raise DatasetError(f"{path}: the table is empty")
        if ids.min() < 0:
            raise DatasetError(f"{path}: negative {col} {ids.min()}")
        declared_key = f"statistics.{key}" if (meta.get("statistics") or {}).get(key) is not None else f"n_{key}"
        declared = (meta.get("statistics") or {}).get(key, meta.get(f"n_{key}"))
        n = int(declared) if declared is not None else int(ids.max()) + 1
        if ids.max() >= n:
            raise DatasetError(
                f"{path}: {col} {ids.max()} out of range: dataset.json's {declared_key} declares {n} {key}"
            )
        n_present = len(np.unique(ids))
        if n_present != n:
            span = f"dataset.json's {declared_key} declares {n}" if declared is not None else f"they span 0..{n - 1}"
            raise DatasetError(f"{path}: {col} not contiguous: {n_present} distinct ids but {span}; re-index them")
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


def _warn_suspicious_rows(inter: pd.DataFrame, path: Path) -> None:
    """Warn with counts about rows that train twice or deflate the metrics."""
    labels = inter["x_label"].to_numpy()
    pairs = inter["userID"].to_numpy(np.int64) * (int(inter["itemID"].max()) + 1) + inter["itemID"].to_numpy(np.int64)
    train = pairs[labels == TRAIN]
    duplicates = len(train) - len(np.unique(train))
    if duplicates:
        log.warning(
            "%s: %d duplicate train rows (a user-item pair listed again); each copy trains again", path, duplicates
        )
    for label in (VALID, TEST):
        overlap = int(np.isin(np.unique(pairs[labels == label]), train).sum())
        if overlap:
            log.warning(
                "%s: %d (user, item) pairs are in both train and %s; train items are masked when ranking, so "
                "those %s items can never be hit (recall is deflated)",
                path,
                overlap,
                SPLIT_NAMES[label],
                SPLIT_NAMES[label],
            )


def _read_features(path: Path, n_items: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        feat = np.load(path, allow_pickle=False)
    except Exception as err:
        raise DatasetError(f"{path}: cannot read as a .npy array ({err})") from err
    if not isinstance(feat, np.ndarray):  # np.load opens a .npz archive whatever the file's name
        feat.close()
        raise DatasetError(f"{path}: a .npz archive, not a .npy array; save the matrix with numpy.save")
    if feat.ndim != 2:
        raise DatasetError(f"{path}: expected a 2-D [items, dim] array, got shape {feat.shape}")
    if feat.shape[0] != n_items:
        raise DatasetError(f"{path}: {feat.shape[0]} feature rows but the dataset has {n_items} items")
    if feat.shape[1] == 0:
        raise DatasetError(f"{path}: the feature matrix has 0 columns (shape {feat.shape}); drop the file instead")
    if not (np.issubdtype(feat.dtype, np.floating) or np.issubdtype(feat.dtype, np.integer)) or feat.dtype == bool:
        raise DatasetError(f"{path}: features must be real numbers, got dtype {feat.dtype}")
    if np.issubdtype(feat.dtype, np.floating) and np.finfo(feat.dtype).max > np.finfo(np.float32).max:
        finite = feat[np.isfinite(feat)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            raise DatasetError(
                f"{path}: {feat.dtype} values up to {np.abs(finite).max():.3g} overflow float32 "
                f"(max {np.finfo(np.float32).max:.3g}); rescale the features"
            )
    bad = ~np.isfinite(feat)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DatasetError(f"{path}: {bad.sum()} NaN/inf values in {len(rows)} item rows (first: {rows[:5].tolist()})")
    return feat.astype(np.float32, copy=False)
