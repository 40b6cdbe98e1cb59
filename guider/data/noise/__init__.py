"""Controlled noise for the robustness study (docs/specification.md, "Noise robustness"):
kinds of training noise, each applied to the train split only and recorded in the copy
(`meta["noise"]`: kind, ratio, seed and what was changed).

The kinds are registered classes (guider.data.noise.base), one file each: `add` (add.py),
`delete` (delete.py), `modality` (modality.py), `natural` (natural.py). `make_noisy_copy`
dispatches on the kind's name. MMRec has no noise tooling; DA-MRS's scripts add and delete
interactions uniformly and swap modality features of random items.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

# registration order is the report's order of the kinds
# isort: off
from guider.data.noise import add, delete, modality, natural  # noqa: F401  (registration side effect)

# isort: on
from guider.data.format.dataset import Dataset
from guider.data.noise.add import NOISE_MODES, inject_noise
from guider.data.noise.base import (
    BASE_LEVEL,
    NO_NOISE,
    NoiseKind,
    level_of,
    level_pattern,
    noise_kind,
    noise_kinds,
    noise_options_schema,
    parse_level,
    ratio_kinds,
    register_noise_kind,
)
from guider.data.noise.delete import delete_interactions
from guider.data.noise.modality import MODALITIES, MODALITY_CHOICES, corrupt_modality
from guider.data.noise.natural import DEFAULT_MAX_NOISY_RATING, label_natural

__all__ = [
    "BASE_LEVEL",
    "DEFAULT_MAX_NOISY_RATING",
    "MODALITIES",
    "MODALITY_CHOICES",
    "NOISE_MODES",
    "NO_NOISE",
    "NoiseKind",
    "corrupt_modality",
    "delete_interactions",
    "inject_noise",
    "label_natural",
    "level_of",
    "level_pattern",
    "make_noisy_copy",
    "noise_kind",
    "noise_kinds",
    "noise_options_schema",
    "parse_level",
    "ratio_kinds",
    "register_noise_kind",
]


def make_noisy_copy(
    ds: Dataset, kind: str, *, ratio: float | None = None, seed: int = 0, **options: Any
) -> tuple[Dataset, dict[str, pd.DataFrame]]:
    """(the noisy copy, extra tables to store beside it: {"noise_deleted": rows} for delete).

    `options` are the kind's own settings (add: mode; modality: modality; natural:
    max_noisy_rating, eval_min_rating); options of other kinds are ignored."""
    chosen = noise_kind(kind)
    problem = chosen.ratio_problem(ratio)
    if problem is not None:
        raise ValueError(problem + (" (the ratings decide which rows are noisy)" if not chosen.has_ratio else ""))
    return chosen.make(ds, ratio, seed, {key: options.get(key) for key in chosen.options})
