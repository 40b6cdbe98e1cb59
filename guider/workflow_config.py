"""The workflow's config, checked against the package's registries and typed configs.

The Snakemake workflow (workflow/rules/common.smk) calls these when it builds the DAG, so
an unknown backbone or method, an override key the run config does not have, or a value
out of range fails `snakemake -n` at once with a message naming the config key, instead of
failing in train jobs after downloads and feature extraction.

- `config_schema`: the workflow's JSON schema with the registries' names as the enums of
  backbones and methods (the schema file holds no list of them to keep in step);
- `check_runs`: every (backbone, method) the studies ask for resolves to a valid run
  config with the overrides the workflow will pass;
- `skipped_runs`: what cannot train on a dataset without item features (an MMRec folder
  with no `text_feat.npy` / `image_feat.npy`), so the DAG leaves it out and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from guider.config import resolve_run_config
from guider.settings import ConfigError

MODALITY_FILES = {"text": "text_feat.npy", "image": "image_feat.npy"}


def config_schema(schema_path: str | Path) -> dict[str, Any]:
    """The schema file with `definitions.backbone.enum` and `definitions.method.enum` filled in."""
    from guider.models import registered
    from guider.objective import available_objectives

    schema = yaml.safe_load(Path(schema_path).read_text())
    schema["definitions"]["backbone"]["enum"] = registered()
    schema["definitions"]["method"]["enum"] = available_objectives()
    return schema


def override_pairs(train: Mapping[str, Any], backbone: str, method: str) -> list[str]:
    """The `--set key=value` pairs of one run: train.overrides, then the backbone's, then the method's."""
    layers = (
        train.get("overrides") or {},
        (train.get("backbone_overrides") or {}).get(backbone) or {},
        (train.get("method_overrides") or {}).get(method) or {},
    )
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return [f"{key}={_yaml_scalar(value)}" for key, value in merged.items()]


def _yaml_scalar(value: Any) -> str:
    """`value` as `--set` parses it back (YAML): true/false, numbers, strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_runs(train: Mapping[str, Any], pairs: Iterable[tuple[str, str]], extra_sets: Iterable[str] = ()) -> None:
    """Resolve the run config of every (backbone, method), with `extra_sets` (a tuning grid
    point) after the config's overrides; ValueError naming the config key."""
    for backbone, method in sorted(set(pairs)):
        try:
            resolve_run_config(
                backbone,
                method=method,
                sets=[*override_pairs(train, backbone, method), *extra_sets],
                epochs=train.get("epochs"),
                patience=train.get("patience"),
            )
        except ConfigError as err:
            raise ValueError(
                f"config train (overrides, backbone_overrides.{backbone} or method_overrides.{method}) "
                f"for backbone {backbone!r} with method {method!r}: {err}"
            ) from None


def folder_modalities(folder: str | Path) -> set[str]:
    """The item features an MMRec-layout folder ships (its text_feat.npy / image_feat.npy)."""
    return {name for name, file in MODALITY_FILES.items() if (Path(folder) / file).is_file()}


def unmet_requirement(backbone: str, method: str, modalities: set[str]) -> str | None:
    """Why `backbone` with `method` cannot train on data with `modalities`, or None."""
    from guider.models import get_class
    from guider.objective import objective_class

    if get_class(backbone).uses_features and not modalities:
        return f"backbone {backbone} needs item features"
    problem = objective_class(method).backbone_problem(backbone)
    if problem is not None:
        return problem
    need = objective_class(method).requires_features
    if need == "any" and not modalities:
        return f"method {method} needs item features"
    if need == "both" and modalities != {"text", "image"}:
        return f"method {method} needs text and image features"
    return None


def skipped_runs(
    pairs: Iterable[tuple[str, str]], modalities: set[str]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    """(the (backbone, method) pairs that can train on the data, {skipped pair: reason})."""
    kept, skipped = [], {}
    for pair in pairs:
        reason = unmet_requirement(*pair, modalities)
        if reason is None:
            kept.append(pair)
        else:
            skipped[pair] = reason
    return kept, skipped
