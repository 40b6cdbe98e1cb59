"""Noise kind `natural`: for data with ratings, train interactions rated <=
`max_noisy_rating` stay positives but are labelled noisy, as T-CE/R-CE (Wang et al., MM
2021) treat low ratings; optionally valid/test keep only rows rated >= `eval_min_rating`
(the one documented change to the evaluation splits). It has no ratio.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from guider.data.format.dataset import TEST, TRAIN, VALID, Dataset
from guider.data.noise.base import NoiseKind, register_noise_kind

log = logging.getLogger(__name__)
DEFAULT_MAX_NOISY_RATING = 2.0


@register_noise_kind
class NaturalNoise(NoiseKind):
    name = "natural"
    description = "train rows rated <= max_noisy_rating labelled noisy (no ratio)"
    has_ratio = False
    options = {
        "max_noisy_rating": {
            "type": "number",
            "default": DEFAULT_MAX_NOISY_RATING,
            "description": "train rows rated at most this are labelled noisy",
        },
        "eval_min_rating": {
            "type": ["number", "null"],
            "default": None,
            "description": "keep only valid/test rows rated at least this",
        },
    }

    @classmethod
    def needs(cls, options):
        return {"ratings"}

    @classmethod
    def make(cls, ds, ratio, seed, options):
        max_noisy = options.get("max_noisy_rating")
        return label_natural(
            ds, DEFAULT_MAX_NOISY_RATING if max_noisy is None else max_noisy, options.get("eval_min_rating")
        ), {}


def label_natural(
    ds: Dataset, max_noisy_rating: float = DEFAULT_MAX_NOISY_RATING, eval_min_rating: float | None = None
) -> Dataset:
    """A copy of `ds` whose train rows rated <= max_noisy_rating are labelled is_noise=1
    (they stay train positives); with eval_min_rating, valid and test keep only the rows
    rated >= eval_min_rating. Needs a rating column (Amazon's preparation keeps it)."""
    if "rating" not in ds.inter.columns:
        raise ValueError(
            f"label_natural: dataset {ds.name!r} has no rating column; natural noise needs the ratings "
            "(guider data prepare keeps them; MMRec's 3-column .inter files have none)"
        )
    rating = ds.inter["rating"].to_numpy(np.float64)
    train = ds.inter["x_label"].to_numpy() == TRAIN
    if np.isnan(rating[train]).any():
        raise ValueError(f"label_natural: dataset {ds.name!r} has train rows without a rating")
    _check_ratings_inform(ds.name, rating[train], max_noisy_rating)
    noisy = train & (rating <= max_noisy_rating)
    inter = ds.inter.copy()
    inter["is_noise"] = noisy.astype(np.int64) | (inter["is_noise"].to_numpy() if "is_noise" in inter else 0)
    dropped = ~train & (rating < eval_min_rating) if eval_min_rating is not None else np.zeros_like(train)
    _check_eval_kept(ds, dropped, eval_min_rating)
    out = copy.copy(ds)
    out.inter = inter[~dropped].reset_index(drop=True)
    record = {
        "kind": "natural",
        "ratio": None,
        "seed": None,
        "max_noisy_rating": float(max_noisy_rating),
        "eval_min_rating": None if eval_min_rating is None else float(eval_min_rating),
        "n_noise": int(noisy.sum()),
        "n_eval_dropped": int(dropped.sum()),
    }
    out.meta = {**ds.meta, "noise": record}
    return out


def _check_ratings_inform(name: str, train_ratings: np.ndarray, max_noisy_rating: float) -> None:
    """Natural noise needs ratings that tell rows apart: one rating value for every train row
    (e.g. a LATTICE or MMRec import, where every rating is 1) labels all rows or none."""
    values = np.unique(train_ratings)
    if len(values) == 1:
        raise ValueError(
            f"label_natural: every train row of dataset {name!r} is rated {values[0]:g}: the ratings carry no "
            "information (an import without real ratings?); natural noise needs the original ratings"
        )
    noisy = int((train_ratings <= max_noisy_rating).sum())
    if noisy == len(train_ratings):
        raise ValueError(
            f"label_natural: every train row of dataset {name!r} is rated <= {max_noisy_rating:g} "
            "(--max-noisy-rating): all would be noise"
        )
    if noisy == 0:
        log.warning(
            "label_natural: no train row of dataset %r is rated <= %g; the copy has no noise", name, max_noisy_rating
        )


def _check_eval_kept(ds: Dataset, dropped: np.ndarray, eval_min_rating: float | None) -> None:
    """--eval-min-rating must leave valid and test rows to evaluate on."""
    labels = ds.inter["x_label"].to_numpy()
    for label, split in ((VALID, "valid"), (TEST, "test")):
        in_split = labels == label
        if in_split.any() and dropped[in_split].all():
            raise ValueError(
                f"label_natural: --eval-min-rating {eval_min_rating:g} removes every {split} row of dataset "
                f"{ds.name!r}; choose a lower threshold"
            )
