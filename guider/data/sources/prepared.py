"""Write a prepared real dataset: the MMRec-compatible folder plus its item content.

Besides `<name>.inter` and `dataset.json` (guider.data.format.mmrec.save_dataset), the folder
holds MMRec's id maps (`u_id_mapping.csv`: user_id, userID; `i_id_mapping.csv`: asin,
itemID; tab-separated) and `item_content.csv` (itemID, text, image), the input of
`guider features text|image`. `image` is the path of the item's image relative to the
folder (under `images/`, hard-linked from the download when possible), empty when the
item has none. The folder is built in a temporary sibling and renamed at the end.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from guider.data.download.registry import IMAGE_SUFFIXES, is_safe_item_id
from guider.data.format.dataset import Dataset
from guider.data.format.mmrec import save_dataset
from guider.data.sources.preprocess import Interactions
from guider.runs.atomic import staging_dir

CONTENT_FILE = "item_content.csv"
USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
IMAGE_FOLDER = "images"


@dataclass
class ItemContent:
    """Per-item text and image file (None when missing), indexed by item id, and what was missing."""

    texts: list[str]
    images: list[Path | None]
    report: dict[str, list[int]] = field(default_factory=dict)  # e.g. items_without_image -> item ids


def write_prepared(
    out: str | os.PathLike, name: str, interactions: Interactions, content: ItemContent, meta: dict[str, Any]
) -> Path:
    """Write the dataset folder `out` atomically."""
    out = Path(out)
    texts, images = content.texts, content.images
    if len(texts) != interactions.n_items or len(images) != interactions.n_items:
        raise ValueError(f"{name}: {len(texts)} texts and {len(images)} images for {interactions.n_items} items")
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = staging_dir(out)
    try:
        staged = save_dataset(
            Dataset(name, interactions.n_users, interactions.n_items, interactions.table, meta=meta), scratch / out.name
        )
        _write_id_maps(staged, interactions)
        _write_content(staged, texts, [_link_image(staged, src) for src in images])
        _swap_into_place(staged, out, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def _write_id_maps(folder: Path, interactions: Interactions) -> None:
    users = pd.DataFrame({"user_id": interactions.user_ids, "userID": range(interactions.n_users)})
    items = pd.DataFrame({"asin": interactions.item_ids, "itemID": range(interactions.n_items)})
    users.to_csv(folder / USER_MAP_FILE, sep="\t", index=False)
    items.to_csv(folder / ITEM_MAP_FILE, sep="\t", index=False)


def _write_content(folder: Path, texts: Sequence[str], images: Sequence[str]) -> None:
    content = pd.DataFrame({"itemID": range(len(texts)), "text": list(texts), "image": list(images)})
    content.to_csv(folder / CONTENT_FILE, index=False)


def _link_image(folder: Path, source: Path | None) -> str:
    """Place `source` under folder/images/ (hard link, else copy); its relative path, or ""."""
    if source is None:
        return ""
    target = folder / IMAGE_FOLDER / source.name
    target.parent.mkdir(exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, target)
    return f"{IMAGE_FOLDER}/{source.name}"


def find_images(folder: Path, keys: Sequence[str]) -> list[Path | None]:
    """The downloaded image `<key>.<ext>` of each key under `folder` (e.g. resources/baby/images), or None.

    Only keys that are safe file names (registry.is_safe_item_id, the rule the downloader names
    images by) are looked up, and only regular files (not symlinks) with an image suffix count;
    of two images of one item, the first name in sorted order wins.
    """
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if (
                path.suffix.lower() in IMAGE_SUFFIXES
                and is_safe_item_id(path.stem)
                and not path.is_symlink()
                and path.is_file()
            ):
                found.setdefault(path.stem, path)
    return [found.get(str(key)) if is_safe_item_id(str(key)) else None for key in keys]


def _swap_into_place(staged: Path, out: Path, scratch: Path) -> None:
    if out.exists():
        out.rename(scratch / "previous")
    staged.rename(out)


def read_content(folder: str | os.PathLike) -> pd.DataFrame:
    """item_content.csv of a dataset folder, validated (itemID 0..n-1 in order, text and image columns)."""
    path = Path(folder) / CONTENT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no item content; prepare the dataset first (guider data prepare NAME)")
    content = pd.read_csv(path, dtype={"text": str, "image": str}, keep_default_na=False)
    missing = {"itemID", "text", "image"} - set(content.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected itemID,text,image")
    if not content["itemID"].tolist() == list(range(len(content))):
        raise ValueError(f"{path}: itemID must run 0..n-1 in order")
    _check_image_paths(Path(folder), path, content)
    return content


def _check_image_paths(folder: Path, path: Path, content: pd.DataFrame) -> None:
    """Image paths are relative and stay inside the dataset folder (also through symlinks)."""
    root = folder.resolve()
    for item, rel in zip(content["itemID"], content["image"]):
        if not rel:
            continue
        inside = (
            not os.path.isabs(rel) and ".." not in Path(rel).parts and (folder / rel).resolve().is_relative_to(root)
        )
        if not inside:
            raise ValueError(
                f"{path}: item {item}: image path {rel!r} leaves the dataset folder; image paths must be "
                "relative paths inside it (e.g. images/<item>.jpg)"
            )
