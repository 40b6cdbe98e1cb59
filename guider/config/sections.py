"""Typed configuration sections: one frozen dataclass per unit (a backbone, the trainer, each
part of a plug-in), its defaults written once beside their provenance, every value checked
for type and range before any work starts, with a message that names the key.

A section declares its fields with `setting`:

    @dataclass(frozen=True)
    class LightGCNConfig(Section):
        embedding_size: int = setting(64, ge=1)  # MMRec overall.yaml
        n_layers: int = setting(3, ge=0)  # MMRec LightGCN.yaml grid [1, 2, 3, 4]

`LightGCNConfig.build({"n_layers": "2"}, "model")` returns the defaults updated by the given
values, coerced to the declared types ('1e-4' from YAML 1.1 becomes a float, 3.0 an int).
Unknown keys, wrong types, non-finite numbers and values out of range raise `ConfigError`
("model.n_layers must be >= 0, got -1"). A section may add cross-field checks in `check`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names its key."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Allowed values of one setting (each bound optional)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None

    def violation(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}"
        items = value if isinstance(value, list) else [value]
        for item in items:
            for bound, fails, text in (
                (self.ge, lambda v, b: v < b, ">="),
                (self.gt, lambda v, b: v <= b, ">"),
                (self.le, lambda v, b: v > b, "<="),
                (self.lt, lambda v, b: v >= b, "<"),
            ):
                if bound is not None and isinstance(item, (int, float)) and fails(item, bound):
                    return (
                        f"must be {text} {bound:g}"
                        if not isinstance(value, list)
                        else f"entries must be {text} {bound:g}"
                    )
        return None


def setting(default: Any, *, ge=None, gt=None, le=None, lt=None, choices=None) -> Any:
    """A dataclass field with a default and the bounds its values must respect.

    List defaults are copied per instance (dataclass `default_factory`)."""
    metadata = {"bounds": Bounds(ge, gt, le, lt, None if choices is None else tuple(choices))}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Section:
    """Base class of every typed config section."""

    # search grid of hyper-parameters (name -> values), where the source publishes one
    grid: ClassVar[dict[str, tuple[Any, ...]]] = {}

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def build(cls, values: Mapping[str, Any] | None, name: str) -> Self:
        """The defaults updated by `values`; ConfigError naming `name.key` on any bad value."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"config section {name} must be a mapping of keys to values, got {values!r}")
        values = dict(values or {})
        known = cls.keys()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown config key {name}.{unknown[0]}" + (f" (and {unknown[1:]})" if unknown[1:] else "") + "; "
                f"known: {', '.join(known) or 'none'}"
            )
        hints = typing.get_type_hints(cls)
        given = {key: coerce(f"{name}.{key}", hints[key], value) for key, value in values.items()}
        section = cls(**given)
        section.check_bounds(name)
        section.check(name)
        return section

    def check_bounds(self, name: str) -> None:
        for field in dataclasses.fields(self):
            bounds: Bounds | None = field.metadata.get("bounds")
            value = getattr(self, field.name)
            problem = None if bounds is None or value is None else bounds.violation(value)
            if problem:
                raise ConfigError(f"{name}.{field.name} {problem}, got {value!r}")

    def check(self, name: str) -> None:
        """Cross-field checks of a section (override); raise ConfigError naming the key."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (nested sections as dicts), as stored in config.json and checkpoints."""
        return dataclasses.asdict(self)


def coerce(key: str, kind: Any, value: Any) -> Any:
    """`value` as the declared type `kind`, or ConfigError naming `key`."""
    options = _union_members(kind)
    if options is not None:
        if value is None and type(None) in options:
            return None
        (kind,) = [option for option in options if option is not type(None)]
    if value is None:
        raise ConfigError(f"{key} must be {_type_name(kind)}, got null")
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(kind)[:1]
        return [coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if kind in (int, float):
        return _number(key, kind, value)
    if isinstance(kind, type) and isinstance(value, kind):
        return value
    raise ConfigError(f"{key} must be {_type_name(kind)}, got {value!r}")


def _number(key: str, kind: type, value: Any) -> int | float:
    if isinstance(value, bool) or (isinstance(value, str) and value != value.strip()):
        raise ConfigError(f"{key} must be {_type_name(kind)}, got {value!r}")
    try:
        number = float(value)  # also parses '1e-4', which YAML 1.1 reads as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be {_type_name(kind)}, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if kind is float:
        return number
    if not number.is_integer():
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return int(number)


def _union_members(kind: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return None


def _type_name(kind: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, str(kind))


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers override earlier ones; nested mappings are merged key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = dict(value) if isinstance(value, Mapping) else value
    return out
