"""Noise kind `modality`: the text feature (the protocol's default), the image feature, or
both (the same items and donors) of a fraction of items replaced by that of a random other
item (DA-MRS's replaced modalities; the paper's misaligned modal content). The interactions
with a swapped item are the ones a content-based detector should doubt.

Why one modality by default: the specification's noise is "the text (or image) feature";
a swap of one feature leaves the item's two modalities disagreeing, which is the misaligned
content AMSC's cross-modal confidence is built to see. Swapping both features of an item
(`both`) keeps them in agreement (both describe the donor), so S_conf cannot see it and
only the content-vs-history similarity can (docs/method.md, "AMSC that lets content decide").
Before 0.4 the default was `both`.
"""

from __future__ import annotations

import copy

import numpy as np

from guider.data.format.dataset import Dataset
from guider.data.noise.base import NoiseKind, register_noise_kind

MODALITIES = {"text": "text_feat", "image": "image_feat"}
MODALITY_CHOICES = (*MODALITIES, "both")


@register_noise_kind
class ModalityNoise(NoiseKind):
    name = "modality"
    description = "round(ratio x n_items) items get the text and/or image feature of a random other item"
    ratio_at_most = 1.0
    options = {
        "modality": {
            "enum": list(MODALITY_CHOICES),
            "default": "text",
            "description": "which feature is swapped (text, the default; image; both: the same items swap both)",
        }
    }

    @classmethod
    def needs(cls, options):
        modality = options.get("modality") or "text"
        return set(MODALITIES) if modality == "both" else {modality}

    @classmethod
    def make(cls, ds, ratio, seed, options):
        return corrupt_modality(ds, ratio, options.get("modality") or "text", seed), {}

    @classmethod
    def truth(cls, dataset, train_items):
        noise = (dataset.meta or {}).get("noise") or {}
        flagged = np.zeros(dataset.n_items, dtype=bool)
        flagged[np.asarray(noise.get("items", []), dtype=np.int64)] = True
        return flagged[np.asarray(train_items)]


def corrupt_modality(ds: Dataset, fraction: float, modality: str, seed: int) -> Dataset:
    """A copy of `ds` where round(fraction * n_items) items get the `modality` feature
    ("text", "image", or "both": the same items and donors for each) of a random other item;
    the swapped items and their donors are recorded in meta["noise"] (kind "modality")."""
    if modality not in MODALITY_CHOICES:
        raise ValueError(
            f"corrupt_modality: unknown modality {modality!r}; choose one of {', '.join(MODALITY_CHOICES)}"
        )
    if not 0 <= fraction <= 1:
        raise ValueError(f"corrupt_modality: fraction must be in [0, 1], got {fraction}")
    keys = list(MODALITIES) if modality == "both" else [modality]
    missing = [key for key in keys if getattr(ds, MODALITIES[key]) is None]
    if missing:
        raise ValueError(f"corrupt_modality: dataset {ds.name!r} has no {' and '.join(missing)} features")
    if ds.n_items < 2:
        raise ValueError("corrupt_modality: needs at least 2 items")
    if (ds.meta.get("noise") or {}).get("kind") == "modality":
        raise ValueError(
            f"corrupt_modality: dataset {ds.name!r} is already a modality-noise copy; swapping again would lose the "
            "record of the first swap (use --modality both for text and image)"
        )
    rng = np.random.default_rng(seed)
    swapped = np.sort(rng.choice(ds.n_items, int(round(fraction * ds.n_items)), replace=False))
    donors = (swapped + rng.integers(1, ds.n_items, len(swapped))) % ds.n_items  # never itself
    out = copy.copy(ds)
    for key in keys:
        feat = getattr(ds, MODALITIES[key])
        new_feat = feat.copy()
        new_feat[swapped] = feat[donors]
        setattr(out, MODALITIES[key], new_feat)
    record = {
        "kind": "modality",
        "ratio": float(fraction),
        "seed": int(seed),
        "modality": modality,
        "items": swapped.tolist(),
        "donors": donors.tolist(),
    }
    out.meta = {**ds.meta, "noise": record}
    return out
