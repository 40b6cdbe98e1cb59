"""MicroLens-100k (westlake-repl/MicroLens) -> a prepared dataset folder.

Inputs, under resources/microlens/ (registry roles):
- `MicroLens-100k_pairs.csv`: user,item,timestamp per line (a header line is allowed;
  timestamps in milliseconds). Every pair is a click: the rating is 1;
- `MicroLens-100k_title_en.csv`: item,title per line, CSV-quoted, usually without a
  header; unquoted commas inside a title are kept as part of the title;
- `covers/<item>.jpg`: cover images fetched by `guider data download microlens`.

The item text is the video title; the item image is its cover. The interactions go
through the same cleaning, k-core, re-indexing and split as the Amazon datasets.

Titles are read with a line-length cap (TITLE_LINE_CAP), and `check_file` tells whether
a downloaded pairs or titles file is complete before it gets its final name or a pin.
"""

from __future__ import annotations

import csv
import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from guider.data.download.registry import DatasetSpec, MiB, capped_lines, check_csv_lines
from guider.data.format.dataset import DatasetError
from guider.data.sources.prepared import ItemContent, find_images
from guider.data.sources.preprocess import Interactions, build_interactions, drop_missing_and_duplicates, k_core

log = logging.getLogger(__name__)
TITLE_LINE_CAP = 1 * MiB  # characters; real title lines are < 1 KB
PAIRS_LINE_CAP = 64 * 1024  # real pairs lines are ~25 bytes


def read_pairs(path: str | Path) -> pd.DataFrame:
    """The raw click table (columns user, item, rating=1, timestamp) in file order; ids stay strings."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not a user,item,timestamp CSV ({err})") from err
    except pd.errors.EmptyDataError as err:
        raise DatasetError(f"{path}: the pairs file is empty") from err
    if raw.shape[1] != 3:
        raise DatasetError(f"{path}: expected 3 columns user,item,timestamp, found {raw.shape[1]}")
    raw.columns = ["user", "item", "timestamp"]
    first_line = 1
    if not str(raw.iloc[0]["timestamp"]).strip().isdigit():  # a header line
        raw, first_line = raw.iloc[1:].reset_index(drop=True), 2
    raw["timestamp"] = _integer_column(raw["timestamp"], path, first_line)
    raw.insert(2, "rating", 1.0)
    return raw


def _integer_column(values: pd.Series, path: Path, first_line: int) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & numbers.isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + first_line
        raise DatasetError(f"{path}: line {line}: timestamp {values[bad].iloc[0]!r} is not a number")
    return numbers


def read_titles(path: str | Path) -> dict[str, str]:
    """{item id: title}; the first title of an id wins, an id-only line gives an empty title."""
    path = Path(path)
    titles: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        lines = _Lines(handle, path)
        try:
            for line_no, row in enumerate(csv.reader(lines), 1):
                if not row or not "".join(row).strip():
                    continue
                key = row[0].strip()
                if not key.isdigit():
                    if line_no == 1:
                        continue  # header
                    raise DatasetError(f"{path}: line {line_no}: item id {key!r} is not a number")
                titles.setdefault(key, ",".join(row[1:]).strip())
        except csv.Error as err:
            raise DatasetError(f"{path}: line {lines.line_no}: not a CSV line ({err})") from err
    return titles


class _Lines:
    """The lines of a text file for csv.reader, each at most TITLE_LINE_CAP characters (DatasetError beyond)."""

    def __init__(self, handle, path: Path):
        self._lines = capped_lines(handle, TITLE_LINE_CAP, path)
        self.line_no = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        self.line_no, line = next(self._lines)
        return line


_END = "\x1eend of file\x1e"  # a line fed after the last one: it stays a record of its own unless a quote is open


def _check_titles_csv(path: Path) -> None:
    """The titles parse as read_titles reads them (csv, lenient) and no quoted field is left open at the end."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        lines = _Lines(handle, path)
        last: list[str] = []
        try:
            for last in csv.reader(itertools.chain(lines, [_END + "\n"])):
                pass
        except csv.Error as err:
            raise DatasetError(f"{path}: line {lines.line_no}: not a CSV line ({err})") from err
    if last != [_END]:
        raise DatasetError(f"{path}: a quoted field is still open at the end of the file: the file is cut")


# --- completeness of downloaded files (guider data download) --------------------------------


def check_file(role: str, path: str | Path) -> None:
    """Raise DatasetError unless `path` is a complete, well-formed file of `role` (pairs or titles).

    A cut that falls exactly at the end of a line cannot be told from a complete file.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: the file is empty")
    if role == "pairs":
        check_csv_lines(path, fields=3, cap=PAIRS_LINE_CAP, what="user,item,timestamp")
    elif role == "titles":
        with open(path, "rb") as handle:
            handle.seek(-1, 2)
            if handle.read(1) not in (b"\n", b"\r"):
                raise DatasetError(f"{path}: the last line does not end with a newline: the file is cut")
        _check_titles_csv(path)
    else:
        raise DatasetError(f"{path}: no format check for a MicroLens file of role {role!r}")


def core_items(spec: DatasetSpec, folder: Path) -> np.ndarray:
    """Raw ids of the videos that survive the protocol's cleaning and k-core."""
    clean, _, _ = drop_missing_and_duplicates(read_pairs(folder / spec.file("pairs").name))
    return pd.unique(k_core(clean, spec.k_core)["item"])


def image_urls(spec: DatasetSpec, folder: Path, items: np.ndarray) -> dict[str, str]:
    """{video id: cover URL} from the registry's URL template."""
    return {str(item): spec.images.url_template.format(item=item) for item in items}


def prepare(spec: DatasetSpec, folder: Path, *, seed: int, k: int | None = None) -> tuple[Interactions, ItemContent]:
    """(interactions, item texts, item cover files or None, content report) from resources/microlens/."""
    interactions = build_interactions(
        read_pairs(folder / spec.file("pairs").name), k=spec.k_core if k is None else k, seed=seed
    )
    items = [str(item) for item in interactions.item_ids]
    titles = read_titles(folder / spec.file("titles").name)
    texts = [titles.get(item, "") for item in items]
    images = find_images(folder / spec.images.folder, items)
    report = {
        "items_without_title": [i for i, item in enumerate(items) if not titles.get(item)],
        "items_without_image": [i for i, path in enumerate(images) if path is None],
    }
    if report["items_without_title"]:
        log.warning("%s: %d items have no title; their text is empty", spec.name, len(report["items_without_title"]))
    return interactions, ItemContent(texts, images, report)
