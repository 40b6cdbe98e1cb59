"""Reading a plug-in's config sections: the objective's defaults updated by the run config.

The trainer already merges `--set` overrides into the sections and rejects unknown keys;
doing the same merge here lets an objective be built from a partial config (tests, notebooks).
"""

from __future__ import annotations

import copy
from typing import Any


def section(config: dict[str, Any], defaults: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """defaults[name] updated by config[name]; unknown keys raise ValueError."""
    merged = copy.deepcopy(defaults[name])
    given = config.get(name) or {}
    unknown = set(given) - set(merged)
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(f'{name}.{k}' for k in unknown)}; known: {sorted(merged)}")
    merged.update(given)
    return merged


def with_changes(defaults: dict[str, dict[str, Any]], **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A deep copy of `defaults` with some keys of some sections changed (variant defaults)."""
    out = copy.deepcopy(defaults)
    for name, values in changes.items():
        out[name].update(values)
    return out


def choice(value: str, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    return value
