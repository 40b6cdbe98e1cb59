"""Amazon 2014 per-category files (McAuley et al.) -> a prepared dataset folder.

Inputs, under resources/<name>/ (registry roles):
- `ratings_<Category>.csv`: user,item,rating,timestamp per line, no header;
- `meta_<Category>.json.gz`: one Python-literal dict per line (asin, title, brand,
  categories, description, imUrl, ...). Lines are parsed with `ast.literal_eval`, never
  `eval`; only lines of items that survive the k-core are parsed in full (the others
  are only checked for an asin), which keeps the 1.5M-line Clothing file fast;
- `images/<asin>.<ext>`: product images fetched from imUrl by `guider data download`.

The item text is MMRec's sentence: "title brand categories[0]... description", a
missing field read as one space, newlines replaced by spaces.

Downloaded files are not trusted: meta lines are read with a length cap (a line longer
than 1 MiB is an error, never held in memory), and `check_file` tells whether a file of
each role is complete before the downloader gives it its final name or pins it.
"""

from __future__ import annotations

import ast
import gzip
import logging
import re
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from guider.data.download.registry import DatasetSpec, MiB, capped_lines, check_csv_lines
from guider.data.format.dataset import DatasetError
from guider.data.sources.prepared import ItemContent, find_images
from guider.data.sources.preprocess import (
    RAW_COLUMNS,
    Interactions,
    build_interactions,
    drop_missing_and_duplicates,
    k_core,
)

log = logging.getLogger(__name__)
ASIN_PATTERN = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")
META_LINE_CAP = 1 * MiB  # real meta lines are < 100 KB
RATINGS_LINE_CAP = 64 * 1024  # real ratings lines are ~50 bytes
FEATURE_RECORD = 10 + 4096 * 4  # image_features_*.b: a 10-byte ASIN + 4096 float32 per item


def read_ratings(path: str | Path) -> pd.DataFrame:
    """The raw ratings table (columns user, item, rating, timestamp) in file order; ids stay strings."""
    path = Path(path)
    try:
        raw = pd.read_csv(
            path,
            header=None,
            names=list(RAW_COLUMNS),
            dtype={"user": str, "item": str},
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not a headerless user,item,rating,timestamp CSV ({err})") from err
    except pd.errors.EmptyDataError as err:
        raise DatasetError(f"{path}: the ratings file is empty") from err
    for column in ("rating", "timestamp"):
        raw[column] = _numeric_column(raw[column], path, column)
    return raw


def _numeric_column(values: pd.Series, path: Path, column: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DatasetError(
            f"{path}: line {line}: {column} {values[bad].iloc[0]!r} is not a number "
            f"({int(bad.sum())} such line(s)); expected user,item,rating,timestamp without a header"
        )
    return numbers


def iter_meta(path: str | Path, keep: set[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of every meta line whose asin is in `keep` (all lines when None).

    Lines are read with a cap of META_LINE_CAP bytes: a longer one is a DatasetError.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            for line_no, raw in _meta_lines(handle, path):
                line = raw.decode("utf-8", errors="replace")
                if not line.strip():
                    continue
                match = ASIN_PATTERN.search(line)
                if match is None:
                    raise DatasetError(f"{path}: line {line_no}: no 'asin' field in this meta line: {line[:80]!r}")
                if keep is None or match.group(1) in keep:
                    yield line_no, _literal_dict(line, path, line_no)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: not a readable gzip file ({err})") from err


def _meta_lines(handle, path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        yield from capped_lines(handle, META_LINE_CAP, path)
    except DatasetError as err:
        raise DatasetError(f"{err}: not an Amazon meta line") from None


def _literal_dict(line: str, path: Path, line_no: int) -> dict[str, Any]:
    try:
        record = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise DatasetError(f"{path}: line {line_no}: not a Python-literal dict ({type(err).__name__}: {err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("asin"), str):
        raise DatasetError(f"{path}: line {line_no}: expected a dict with a string 'asin', got {type(record).__name__}")
    return record


def read_meta(path: str | Path, keep: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """{asin: record} for the items in `keep` (the first line of an asin wins)."""
    records: dict[str, dict[str, Any]] = {}
    for _, record in iter_meta(path, keep):
        records.setdefault(record["asin"], record)
    return records


# --- completeness of downloaded files (guider data download) --------------------------------


def check_file(role: str, path: str | Path) -> None:
    """Raise DatasetError unless `path` is a complete, well-formed file of `role`.

    The downloader calls it before a file whose size it cannot otherwise trust (no
    Content-Length, or trust on first use) gets its final name or a pin. A cut that falls
    exactly at a line or record boundary cannot be told from a complete file, except in
    gzip files, whose trailer seals them.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty")
    if role == "ratings":
        check_csv_lines(path, fields=4, cap=RATINGS_LINE_CAP, what="user,item,rating,timestamp")
    elif role == "meta":
        check_meta_file(path)
    elif role == "image_features":
        size = path.stat().st_size
        if size % FEATURE_RECORD:
            raise DatasetError(
                f"{path}: {size:,} bytes is not a whole number of {FEATURE_RECORD:,}-byte records "
                f"(10-byte ASIN + 4096 float32): the file is cut"
            )
    else:
        raise DatasetError(f"{path}: no format check for an Amazon file of role {role!r}")


def check_meta_file(path: Path) -> None:
    """The meta file decompresses to its end with a valid gzip trailer, and no line is over the cap."""
    try:
        with gzip.open(path, "rb") as handle:
            for _ in _meta_lines(handle, path):
                pass
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: not a complete gzip file ({err})") from err


def item_sentence(record: dict[str, Any] | None) -> str:
    """MMRec's item text: title, brand, the first category path and the description."""
    record = record or {}
    sentence = f"{_text_field(record, 'title')} {_text_field(record, 'brand')} "
    categories = record.get("categories")
    if isinstance(categories, list) and categories and isinstance(categories[0], (list, tuple)):
        sentence += "".join(f"{category} " for category in categories[0])
    sentence += _text_field(record, "description")
    return sentence.replace("\n", " ")


def _text_field(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value):
        return " "  # MMRec: an empty cell reads back as NaN and is filled with one space
    return str(value)


def core_items(spec: DatasetSpec, folder: Path) -> np.ndarray:
    """Raw ids (ASINs) of the items that survive the protocol's cleaning and k-core."""
    clean, _, _ = drop_missing_and_duplicates(read_ratings(folder / spec.file("ratings").name))
    return pd.unique(k_core(clean, spec.k_core)["item"])


def image_urls(spec: DatasetSpec, folder: Path, items: np.ndarray) -> dict[str, str]:
    """{asin: image URL} of `items` from the meta file (items without one are absent)."""
    meta = read_meta(folder / spec.file("meta").name, keep=set(items))
    urls = {asin: meta[asin].get(spec.images.field) for asin in items if asin in meta}
    return {asin: url for asin, url in urls.items() if isinstance(url, str) and url.strip()}


def prepare(spec: DatasetSpec, folder: Path, *, seed: int, k: int | None = None) -> tuple[Interactions, ItemContent]:
    """(interactions, item texts, item image files or None, content report) from resources/<name>/."""
    interactions = build_interactions(
        read_ratings(folder / spec.file("ratings").name), k=spec.k_core if k is None else k, seed=seed
    )
    items = list(interactions.item_ids)
    meta = read_meta(folder / spec.file("meta").name, keep=set(items))
    texts = [item_sentence(meta.get(asin)) for asin in items]
    images = find_images(folder / spec.images.folder, items)
    report = {
        "items_without_meta": [i for i, asin in enumerate(items) if asin not in meta],
        "items_without_image": [i for i, path in enumerate(images) if path is None],
    }
    if report["items_without_meta"]:
        log.warning("%s: %d items have no meta line; their text is empty", spec.name, len(report["items_without_meta"]))
    return interactions, ItemContent(texts, images, report)
