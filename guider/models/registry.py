"""Backbones are found by name; their default hyper-parameters live in `defaults.yaml`."""

from __future__ import annotations

from importlib import resources
from typing import Any, Callable

import yaml

from guider.models.base import ModelInputs, Recommender

_REGISTRY: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a backbone available under `name`."""

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_class(name: str) -> type[Recommender]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(available())}") from None


def default_hparams(name: str) -> dict[str, Any]:
    """MMRec's defaults for `name` (the single place they are written down)."""
    get_class(name)
    text = resources.files("guider.models").joinpath("defaults.yaml").read_text()
    return dict(yaml.safe_load(text).get(name) or {})


def build_model(name: str, inputs: ModelInputs, overrides: dict[str, Any] | None = None) -> Recommender:
    """Instantiate backbone `name` with its defaults updated by `overrides`, on inputs.device."""
    hparams = default_hparams(name)
    unknown = set(overrides or {}) - set(hparams)
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)} for {name!r}; known: {sorted(hparams)}")
    hparams.update(overrides or {})
    return get_class(name)(inputs, **hparams).to(inputs.device)
