"""Run configuration: defaults in one place, overrides from a YAML file and `--set key=value`.

A resolved run config is one nested dict:
  {"backbone", "variant", "denoise", "seed", "device", "model": {...}, "train": {...},
   <plug-in sections, e.g. "amsc", "kd">}
`model` defaults come from guider/models/defaults.yaml, `train` from TRAIN_DEFAULTS below,
plug-in sections from the objective's `defaults`. Unknown keys are errors, so a typo in
`--set` never silently does nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml

TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 0.001,  # MMRec overall.yaml: Adam, learning_rate 0.001
    "weight_decay": 0.0,  # MMRec overall.yaml
    "batch_size": 2048,  # MMRec train_batch_size
    "epochs": 1000,  # MMRec epochs; early stopping ends runs far sooner
    "patience": 20,  # MMRec stopping_step: evaluations without valid improvement
    "eval_every": 1,  # MMRec eval_step
    "eval_batch_users": 4096,  # users ranked per chunk (bounds evaluation memory)
    "valid_metric": "recall@20",  # MMRec valid_metric Recall@20
    "ks": [5, 10, 20, 50],  # MMRec topk
}


def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """['kd.weight=0.2', 'train.lr=1e-3'] -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"--set key {key!r} must be section.name, e.g. train.lr or model.reg_weight")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a run config must be a YAML mapping of sections")
    return data


def merge_section(name: str, defaults: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """defaults updated by each override in turn; unknown keys raise ValueError."""
    merged = copy.deepcopy(defaults)
    for override in overrides:
        for key, value in (override or {}).items():
            if key not in merged:
                raise ValueError(f"unknown config key {name}.{key}; known: {', '.join(sorted(merged)) or 'none'}")
            if isinstance(merged[key], dict) and isinstance(value, dict):
                merged[key] = merge_section(f"{name}.{key}", merged[key], value)
            else:
                merged[key] = _coerce(f"{name}.{key}", merged[key], value)
    return merged


def _coerce(key: str, default: Any, value: Any) -> Any:
    """Give `value` the type of `default` where that is unambiguous ('1e-4' -> 1e-4, 3 -> 3.0)."""
    if isinstance(default, bool) or default is None or isinstance(value, bool):
        return value
    if isinstance(default, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key} expects a number, got {value!r}") from None
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def resolve_sections(
    sections: dict[str, dict[str, Any]], file_cfg: dict[str, Any], set_cfg: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Merge file and --set overrides into the known sections; unknown sections raise."""
    unknown = (set(file_cfg) | set(set_cfg)) - set(sections)
    if unknown:
        raise ValueError(f"unknown config section(s) {sorted(unknown)}; known: {', '.join(sorted(sections))}")
    return {
        name: merge_section(name, defaults, file_cfg.get(name, {}), set_cfg.get(name, {}))
        for name, defaults in sections.items()
    }
