"""The embedded synthetic dataset: a small multimodal catalogue with known structure.

`make_synthetic` writes an MMRec-compatible folder (docs/specification.md, Protocol, "On-disk dataset
format") plus the raw content the feature pipeline reads from any dataset:

    synthetic.inter        userID itemID rating timestamp x_label is_noise
    text_feat.npy          all-MiniLM-L6-v2 (384-d) over the descriptions
    image_feat.npy         EfficientNet-Lite0 (1280-d) over the rendered images
    item_content.csv       itemID, text, image (relative path of the image file)
    item_attributes.csv    the latent attributes of each item (ground truth)
    images/000123.png      one rendered image per item
    dataset.json           generator parameters, statistics, encoders, misaligned items, noise

Items come from latent categories and attributes (synthetic_vocab), users have latent
tastes over those attributes (synthetic_interactions); a fraction of items is
misaligned (its image is rendered from another item's attributes, its text is its own);
noise is injected into the train split only (noise.py) after the protocol's split.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from guider.data.format.dataset import Dataset, check_name
from guider.data.format.mmrec import save_dataset
from guider.data.noise import NOISE_MODES, inject_noise
from guider.data.sources.split import split_per_user
from guider.data.synthetic.interactions import (
    LatentParams,
    add_timestamps_and_ratings,
    draw_interactions,
    draw_items,
    draw_latent,
    top_up_items,
    user_degrees,
)
from guider.data.synthetic.render import render
from guider.data.synthetic.text import describe
from guider.data.synthetic.vocab import ATTRIBUTES, BRANDS, CATEGORIES, COLOURS, MATERIALS, PATTERNS, STYLES
from guider.runs.atomic import staging_dir

log = logging.getLogger(__name__)
NAME = "synthetic"
PRESETS = {
    "small": {"users": 2000, "items": 1000, "interactions": 25_000},
    "baby": {"users": 19_445, "items": 7_050, "interactions": 160_792},  # MMRec's Baby counts
}
IMAGE_SIZE = 64  # rendered images are IMAGE_SIZE x IMAGE_SIZE pixels
ENCODE_SIZE = 96  # EfficientNet crop for these small renders: same kNN structure as 224, 5x cheaper
# independent random streams, so that e.g. a new noise ratio leaves everything else unchanged
STREAMS = {
    "items": 1,
    "latent": 2,
    "degrees": 3,
    "draws": 4,
    "history": 5,
    "misaligned": 6,
    "text": 7,
    "images": 8,
    "split": 9,
    "noise": 10,
}


def make_synthetic(
    out_dir: str | Path,
    preset: str = "small",
    users: int | None = None,
    items: int | None = None,
    noise_ratio: float = 0.0,
    noise_mode: str = "popular",
    misaligned_ratio: float = 0.05,
    seed: int = 0,
    encode: bool = True,
    params: LatentParams | None = None,
    progress: bool = False,
    name: str = NAME,
) -> Path:
    """Generate the synthetic dataset into `out_dir` (replaced atomically); return its path.

    `users`/`items` override the preset's sizes (interactions scale with users at the
    preset's mean degree). `encode=False` skips the text/image features (no .npy files).
    `name` is the dataset's name (its .inter file; the workflow passes its dataset key).
    """
    n_users, n_items, n_target = _sizes(preset, users, items)
    _check_args(noise_ratio, noise_mode, misaligned_ratio)
    params = params or LatentParams()
    started = time.perf_counter()
    item_attrs, inter = _interactions(n_users, n_items, n_target, params, seed)
    misaligned, donors = _misaligned(item_attrs, misaligned_ratio, _rng(seed, "misaligned"))
    texts, images = _content(item_attrs, misaligned, donors, seed)
    ds = Dataset(check_name(name, "guider data synthetic --name"), n_users, n_items, inter, meta={})
    ds = inject_noise(ds, noise_ratio, seed=_stream_seed(seed, "noise"), mode=noise_mode)
    encoders = _encode(ds, texts, images, progress) if encode else None
    ds.meta = _metadata(ds, preset, seed, params, n_target, misaligned, donors, misaligned_ratio, encoders)
    ds.meta["generation_seconds"] = round(time.perf_counter() - started, 2)
    return _write(ds, texts, images, item_attrs, Path(out_dir))


def _sizes(preset: str, users: int | None, items: int | None) -> tuple[int, int, int]:
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    n_users = base["users"] if users is None else int(users)
    n_items = base["items"] if items is None else int(items)
    if n_users < 10 or n_items < 20:
        raise ValueError(
            f"synthetic dataset too small: {n_users} users, {n_items} items (need >= 10 users, >= 20 items)"
        )
    return n_users, n_items, int(round(base["interactions"] / base["users"] * n_users))


def _check_args(noise_ratio: float, noise_mode: str, misaligned_ratio: float) -> None:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {noise_mode!r}; choose one of {', '.join(NOISE_MODES)}")
    if not 0 <= noise_ratio <= 5:
        raise ValueError(f"noise ratio must be in [0, 5], got {noise_ratio}")
    if not 0 <= misaligned_ratio <= 1:
        raise ValueError(f"misaligned ratio must be in [0, 1], got {misaligned_ratio}")


def _stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """An integer seed for one stream (and item), derived from the dataset seed."""
    return int(np.random.SeedSequence([int(seed), STREAMS[stream], int(index)]).generate_state(1)[0])


def _rng(seed: int, stream: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(_stream_seed(seed, stream, index))


def _interactions(n_users: int, n_items: int, n_target: int, params: LatentParams, seed: int):
    """Item attributes and the split interaction table (before noise)."""
    item_attrs = draw_items(n_items, _rng(seed, "items"))
    latent = draw_latent(n_users, item_attrs, params, _rng(seed, "latent"))
    degrees = user_degrees(n_users, n_items, n_target / n_users, params, _rng(seed, "degrees"))
    draws = _rng(seed, "draws")
    inter = top_up_items(draw_interactions(latent, params, degrees, draws), latent, params, n_users, draws)
    inter = add_timestamps_and_ratings(inter, params, _rng(seed, "history"))
    inter["x_label"] = split_per_user(inter["userID"], inter["itemID"], inter["timestamp"], seed=int(seed))
    inter = inter.sort_values(["userID", "timestamp"], kind="stable").reset_index(drop=True)
    return item_attrs, inter[["userID", "itemID", "rating", "timestamp", "x_label"]]


def _misaligned(item_attrs: pd.DataFrame, ratio: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Items whose image shows another item (of another category), and those donors."""
    n_items = len(item_attrs)
    chosen = np.sort(rng.choice(n_items, int(round(ratio * n_items)), replace=False))
    category = item_attrs["category"].to_numpy()
    donors = np.empty(len(chosen), dtype=np.int64)
    for k, item in enumerate(chosen):
        others = np.flatnonzero(category != category[item])
        donors[k] = rng.choice(others) if len(others) else rng.choice(np.delete(np.arange(n_items), item))
    return chosen, donors


def _content(item_attrs: pd.DataFrame, misaligned, donors, seed: int) -> tuple[list[str], list[Image.Image]]:
    """Each item's description (its own attributes) and image (the donor's when misaligned)."""
    image_attrs = item_attrs.copy()
    image_attrs.iloc[misaligned] = item_attrs.iloc[donors].to_numpy()
    texts = [describe(row, _rng(seed, "text", i)) for i, row in enumerate(item_attrs.to_dict("records"))]
    images = [render(row, IMAGE_SIZE, _rng(seed, "images", i)) for i, row in enumerate(image_attrs.to_dict("records"))]
    return texts, images


def _encode(ds: Dataset, texts: list[str], images: list[Image.Image], progress: bool) -> dict:
    from guider.features.image import DEFAULT_IMAGE_MODEL, encode_images, image_model_info
    from guider.features.text import DEFAULT_TEXT_MODEL, encode_texts

    ds.text_feat = encode_texts(texts, DEFAULT_TEXT_MODEL, progress=progress)
    ds.image_feat, missing = encode_images(images, DEFAULT_IMAGE_MODEL, progress=progress, image_size=ENCODE_SIZE)
    return {
        "text": {"encoder": DEFAULT_TEXT_MODEL, "dim": int(ds.text_feat.shape[1]), "input": "item_content.csv text"},
        "image": {
            **image_model_info(DEFAULT_IMAGE_MODEL),
            "encoder": DEFAULT_IMAGE_MODEL,
            "input": "item_content.csv image",
            "image_size": ENCODE_SIZE,
            "imputed_items": missing,
        },
    }


def _metadata(ds, preset, seed, params, n_target, misaligned, donors, misaligned_ratio, encoders) -> dict:
    return {
        "name": ds.name,
        "source": "guider synthetic generator (guider.data.synthetic.generator)",
        "preset": preset,
        "seed": int(seed),
        "generator": {
            "users": ds.n_users,
            "items": ds.n_items,
            "target_interactions": n_target,
            "misaligned_ratio": float(misaligned_ratio),
            "image_size": IMAGE_SIZE,
            **params.to_dict(),
        },
        "features": encoders or {},  # same layout as `guider features text|image` writes
        "misaligned_items": misaligned.tolist(),
        "misaligned_donors": donors.tolist(),
        "noise": {**ds.meta["noise"], "origin": "generator"},  # part of the dataset as generated: its base
        "columns": {"is_noise": "1 = injected noise (train only)"},
    }


def _item_tables(texts: list[str], item_attrs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    item_ids = np.arange(len(texts))
    content = pd.DataFrame({"itemID": item_ids, "text": texts, "image": [image_path(i) for i in item_ids]})
    names = {
        "category": [c.noun for c in CATEGORIES],
        "colour": list(COLOURS),
        "pattern": list(PATTERNS),
        "material": list(MATERIALS),
        "style": list(STYLES),
        "brand": list(BRANDS),
    }
    attributes = pd.DataFrame({"itemID": item_ids, **{a: np.asarray(names[a])[item_attrs[a]] for a in ATTRIBUTES}})
    return content, attributes


def image_path(item: int) -> str:
    """Relative path of an item's image inside the dataset folder."""
    return f"images/{item:06d}.png"


def _write(ds: Dataset, texts, images, item_attrs: pd.DataFrame, out_dir: Path) -> Path:
    """Assemble the whole folder next to `out_dir`, then swap it in."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(out_dir)
    try:
        folder = save_dataset(ds, stage / out_dir.name)
        (folder / "images").mkdir()
        for item, image in enumerate(images):
            image.save(folder / image_path(item))
        content, attributes = _item_tables(texts, item_attrs)
        content.to_csv(folder / "item_content.csv", index=False)
        attributes.to_csv(folder / "item_attributes.csv", index=False)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        folder.rename(out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("synthetic dataset written to %s (%s)", out_dir, ds.statistics())
    return out_dir
