"""The noise-kind registry: one class per kind of training noise, found by name.

A kind says everything the rest of the suite needs to know about it, so a new kind is one
class in one file plus one import line (guider/data/noise/__init__.py, or a plug-in module):

- `name`, `description`; `has_ratio` (add 0.2 vs natural) and the ratios it accepts;
- `options`: its settings, as the workflow config's `noise.<key>` (JSON-schema fragments with
  defaults, merged into the workflow schema) and as `guider data noise --<key>` options;
- `needs(options)`: what it needs of the data (item features it swaps, ratings it reads);
- `folder(ratio)`: the name of the copy's data folder (`add0.2`, `natural`): the study's
  run paths and the report's data level;
- `make(ds, ratio, seed, options)`: the noisy copy and the extra tables stored beside it;
- `truth(dataset, train_items)`: per train row, whether it is noise by this kind's
  definition (what AMSC's false set is scored against), or None when the kind labels
  nothing (delete).
"""

from __future__ import annotations

import argparse
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from guider.data.format.dataset import Dataset

BASE_LEVEL = "base"  # the data folder of the dataset as prepared (no noise)
NO_NOISE = "none"  # the noise kind of the base data


class NoiseKind:
    """Base class of a noise kind (see the module docstring); subclasses are registered with
    `@register_noise_kind`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    has_ratio: ClassVar[bool] = True
    ratio_below: ClassVar[float | None] = None  # ratios must be < this (delete: 1)
    ratio_at_most: ClassVar[float | None] = None  # ratios must be <= this (modality: 1)
    # noise.<key> of the workflow config, as a JSON-schema fragment with its default
    options: ClassVar[dict[str, dict[str, Any]]] = {}
    labels_rows: ClassVar[bool] = True  # False: nothing false is added, so no detection to score (delete)

    @classmethod
    def folder(cls, ratio: float | None) -> str:
        """The data folder of a copy: '<name><ratio>' (ratio 0: the base data) or '<name>'."""
        if not cls.has_ratio:
            return cls.name
        return BASE_LEVEL if ratio == 0 else f"{cls.name}{ratio:g}"

    @classmethod
    def ratio_problem(cls, ratio: float | None) -> str | None:
        """Why `ratio` is not allowed for this kind, or None."""
        if not cls.has_ratio:
            return None if ratio is None else f"noise kind {cls.name!r} takes no ratio"
        if ratio is None or not math.isfinite(ratio) or ratio < 0:
            return f"noise kind {cls.name!r} needs a ratio (a finite number >= 0), got {ratio}"
        if cls.ratio_below is not None and ratio >= cls.ratio_below:
            return f"noise kind {cls.name!r}: ratios must be < {cls.ratio_below:g}, got {ratio:g}"
        if cls.ratio_at_most is not None and ratio > cls.ratio_at_most:
            return f"noise kind {cls.name!r}: ratios must be <= {cls.ratio_at_most:g}, got {ratio:g}"
        return None

    @classmethod
    def needs(cls, options: dict[str, Any]) -> set[str]:
        """What the kind needs of the data: "text", "image" (features), "ratings"."""
        return set()

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """`guider data noise` options of this kind (one per entry of `options`)."""
        for key, spec in cls.options.items():
            parser.add_argument(f"--{key.replace('_', '-')}", dest=key, **_argument(spec, cls.name))

    @classmethod
    def cli_args(cls, options: dict[str, Any]) -> list[str]:
        """The `guider data noise` arguments that pass the config's options of this kind."""
        args = []
        for key in cls.options:
            value = options.get(key)
            if value is not None:
                args += [f"--{key.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
        return args

    @classmethod
    def make(
        cls, ds: Dataset, ratio: float | None, seed: int, options: dict[str, Any]
    ) -> tuple[Dataset, dict[str, pd.DataFrame]]:
        raise NotImplementedError

    @classmethod
    def truth(cls, dataset: Dataset, train_items: np.ndarray) -> np.ndarray | None:
        """[train rows] bool: the rows this kind made noisy (None: it labels nothing)."""
        return dataset.train_noise_labels


def _argument(spec: dict[str, Any], kind: str) -> dict[str, Any]:
    """argparse settings of an option from its JSON-schema fragment."""
    types = spec.get("type")
    types = types if isinstance(types, list) else [types]
    argument: dict[str, Any] = {"default": spec.get("default"), "help": f"{kind}: {spec.get('description', '')}"}
    if "enum" in spec:
        argument["choices"] = spec["enum"]
    elif "number" in types:
        argument["type"] = float
    elif "integer" in types:
        argument["type"] = int
    return argument


_KINDS: dict[str, type[NoiseKind]] = {}


def register_noise_kind(cls: type[NoiseKind]) -> type[NoiseKind]:
    """Class decorator: make a noise kind available by its `name` (also from outside the package)."""
    if not cls.name or not cls.name.isidentifier() or not cls.name.islower():
        raise ValueError(f"noise kind {cls.__name__}: name must be a lower-case identifier, got {cls.name!r}")
    if cls.name in _KINDS or cls.name in (BASE_LEVEL, NO_NOISE):
        raise ValueError(f"noise kind {cls.name!r} registered twice (or a reserved name)")
    taken = {key for kind in _KINDS.values() for key in kind.options}
    if taken & set(cls.options):
        raise ValueError(f"noise kind {cls.name!r}: option(s) {sorted(taken & set(cls.options))} already taken")
    _KINDS[cls.name] = cls
    return cls


def noise_kinds() -> list[str]:
    """Registered kinds, in registration order (the report's order)."""
    return list(_KINDS)


def noise_kind(name: str) -> type[NoiseKind]:
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown noise kind {name!r}; choose one of {', '.join(_KINDS)}") from None


def ratio_kinds() -> list[str]:
    return [name for name, kind in _KINDS.items() if kind.has_ratio]


def noise_options_schema() -> dict[str, dict[str, Any]]:
    """Every kind's options, as properties of the workflow config's `noise` section."""
    return {key: dict(spec) for kind in _KINDS.values() for key, spec in kind.options.items()}


def level_pattern(with_base: bool = True) -> str:
    """A regular expression matching every data-folder name: base, <ratio kind><r>, <kind>
    (without base: the noisy copies' folders only)."""
    ratio = "|".join(sorted(ratio_kinds()))
    plain = "|".join(sorted(set(_KINDS) - set(ratio_kinds())))
    parts = ([BASE_LEVEL] if with_base else []) + ([f"(?:{ratio})[0-9]*\\.?[0-9]+"] if ratio else [])
    return "|".join(parts + ([plain] if plain else [])) or "(?!x)x"


def level_of(meta: dict[str, Any] | None) -> tuple[str, str, float]:
    """(data folder, noise kind, ratio) of a dataset from its dataset.json `noise` record:
    ('base', 'none', 0.0) without one, or when the noise is part of the dataset as generated
    (the synthetic generator's `--noise-ratio`, record origin "generator"); a kind without a
    ratio has ratio NaN."""
    record = (meta or {}).get("noise") or {}
    if not record or record.get("origin") == "generator":
        return BASE_LEVEL, NO_NOISE, 0.0
    name = record.get("kind", "add" if "ratio" in record else None)  # copies made before kinds existed: add
    kind = noise_kind(str(name))
    ratio = float(record["ratio"]) if kind.has_ratio and record.get("ratio") is not None else float("nan")
    if kind.has_ratio and ratio == 0:  # e.g. the synthetic generator's record of no injected noise
        return BASE_LEVEL, NO_NOISE, 0.0
    return kind.folder(ratio if kind.has_ratio else None), kind.name, ratio


def parse_level(level: str) -> tuple[str, float]:
    """(noise kind, ratio) of a data-folder name: 'base' -> ('none', 0.0), 'add0.2' -> ('add', 0.2),
    'natural' -> ('natural', nan); ValueError otherwise."""
    if level == BASE_LEVEL:
        return NO_NOISE, 0.0
    if level in _KINDS and not _KINDS[level].has_ratio:
        return level, float("nan")
    for name in sorted(ratio_kinds(), key=len, reverse=True):
        rest = level.removeprefix(name)
        if rest != level and rest.replace(".", "", 1).isdigit():
            return name, float(rest)
    raise ValueError(f"data folder name {level!r} is neither {BASE_LEVEL!r} nor a noise level ({level_pattern()})")
