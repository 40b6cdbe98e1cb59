"""Backbones are found by name; each carries its typed hyper-parameters (`cls.Config`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from guider.config.sections import ConfigError
from guider.models.base import ModelConfig, ModelInputs, Recommender

_REGISTRY: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[type[Recommender]], type[Recommender]]:
    """Class decorator: make a backbone available under `name` (also from outside the package)."""

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, ModelConfig)):
            raise TypeError(f"backbone {name!r}: Config must be a dataclass derived from guider.models.ModelConfig")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    return sorted(_REGISTRY)


def registered() -> list[str]:
    """Backbone names in registration order (the order tables list them)."""
    return list(_REGISTRY)


def get_class(name: str) -> type[Recommender]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; available: {', '.join(available())}") from None


def default_hparams(name: str) -> dict[str, Any]:
    """The backbone's default hyper-parameters (MMRec's), as a plain dict."""
    return get_class(name).Config().to_dict()


def model_config(name: str, values: Mapping[str, Any] | ModelConfig | None = None, key: str = "model") -> ModelConfig:
    """`name`'s Config with `values` applied; errors name `key`.<setting>."""
    cls = get_class(name).Config
    if isinstance(values, ModelConfig):
        if not isinstance(values, cls):
            raise ConfigError(f"{key}: a {type(values).__name__} was given to backbone {name!r} ({cls.__name__})")
        return values
    return cls.build(values, key)


def build_model(name: str, inputs: ModelInputs, config: Mapping[str, Any] | ModelConfig | None = None) -> Recommender:
    """Instantiate backbone `name` with its Config (or overrides of its defaults), on inputs.device."""
    return get_class(name)(inputs, model_config(name, config)).to(inputs.device)
