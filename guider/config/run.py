"""The configuration of one run, resolved once and checked before any work starts.

A run is (backbone, method, seed) plus typed sections:
- `model`: the backbone's own `Config` (guider/models/<backbone>.py, MMRec's defaults);
- `train`: `TrainConfig` below;
- the method's sections (GUIDER: amsc, teacher, dbpr, kd; T-CE: tce; ...), declared by its
  objective class (guider/methods/base.py, guider/methods/).
Overrides come from a YAML file (`--config`, the same sections) and `--set section.key=value`
(later wins). Unknown sections or keys, wrong types and out-of-range values are errors that
name the key (guider.config.sections). The resolved `RunConfig.to_dict()` is what config.json and
every checkpoint store; `data_fingerprint` ties a run to the data it trained on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from guider.config.sections import ConfigError, Section, deep_merge, setting
from guider.engine.metrics import METRIC_NAMES


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
    lr: float = setting(0.001, gt=0)  # MMRec overall.yaml: Adam, learning_rate 0.001
    weight_decay: float = setting(0.0, ge=0)  # MMRec overall.yaml
    batch_size: int = setting(2048, ge=1)  # MMRec train_batch_size
    epochs: int = setting(1000, ge=1)  # MMRec epochs; early stopping ends runs far sooner
    min_epochs: int = setting(0, ge=0)  # ours: no early stop before this many epochs (MMRec: none)
    patience: int = setting(20, ge=1)  # MMRec stopping_step: evaluations without valid improvement
    eval_every: int = setting(1, ge=1)  # MMRec eval_step
    eval_batch_users: int = setting(4096, ge=1)  # users ranked per chunk (bounds evaluation memory)
    valid_metric: str = setting("recall@20")  # MMRec valid_metric Recall@20
    ks: list[int] = setting([5, 10, 20, 50], ge=1)  # MMRec topk
    # MMRec learning_rate_scheduler [gamma, step]: lr at epoch e = lr * gamma ** (e / step);
    # overall.yaml's [1.0, 50] keeps it constant, some models set their own (LATTICE [0.96, 50])
    lr_scheduler: list[float] = setting([1.0, 50.0], gt=0)

    def check(self, name: str) -> None:
        if not self.ks:
            raise ConfigError(f"{name}.ks must list at least one cut-off, got []")
        metric, _, k = self.valid_metric.partition("@")
        if metric not in METRIC_NAMES or not k.isdigit():
            raise ConfigError(
                f"{name}.valid_metric must look like recall@20 (one of {', '.join(METRIC_NAMES)} @ a cut-off), "
                f"got {self.valid_metric!r}"
            )
        if int(k) not in self.ks:
            raise ConfigError(
                f"{name}.valid_metric {self.valid_metric!r} is not computed: {k} is not in {name}.ks {self.ks}"
            )
        if self.min_epochs > self.epochs:
            raise ConfigError(f"{name}.min_epochs ({self.min_epochs}) exceeds {name}.epochs ({self.epochs})")
        if len(self.lr_scheduler) != 2:
            raise ConfigError(
                f"{name}.lr_scheduler must be [gamma, step] (MMRec's learning_rate_scheduler), got {self.lr_scheduler}"
            )

    def lr_factor(self, epoch: int) -> float:
        """MMRec's LambdaLR factor of epoch `epoch`: gamma ** (epoch / step)."""
        gamma, step = self.lr_scheduler
        return gamma ** (epoch / step)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result (stored in config.json and checkpoints)."""

    backbone: str
    method: str
    seed: int
    model: Section
    train: TrainConfig
    sections: dict[str, Section]  # the method's own sections, e.g. amsc, teacher, dbpr, kd
    dataset: str | None = None
    data_fingerprint: str | None = None  # guider.data.format.fingerprint of the data it trains on

    def section(self, name: str) -> Section:
        return self.sections[name]

    def with_data(self, dataset: str, fingerprint: str) -> RunConfig:
        return dataclasses.replace(self, dataset=dataset, data_fingerprint=fingerprint)

    def to_dict(self) -> dict[str, Any]:
        head = {"backbone": self.backbone, "method": self.method, "seed": self.seed, "dataset": self.dataset}
        sections = {name: section.to_dict() for name, section in self.sections.items()}
        return {**head, "data_fingerprint": self.data_fingerprint, "model": self.model.to_dict(),
                "train": self.train.to_dict(), **sections}  # fmt: skip


def parse_set(pairs: Iterable[str]) -> dict[str, Any]:
    """['kd.weight=0.2', 'teacher.model.n_layers=3'] -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set key {key!r} must be section.name, e.g. train.lr or model.reg_weight")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is set both as a value and as a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value {raw!r} is not a YAML scalar ({err})") from None
    return out


def load_yaml(path: str | Path | None) -> dict[str, Any]:
    """A run config file: a YAML mapping of sections; errors name the file."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_position(err)})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the run config ({err.strerror})") from None
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a run config must be a YAML mapping of sections, got {type(data).__name__}")
    for name, section in data.items():
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of keys to values, got {section!r}")
    return data


def _yaml_position(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def resolve_run_config(
    backbone: str,
    *,
    method: str = "none",
    seed: int = 0,
    config_file: str | Path | None = None,
    sets: Iterable[str] = (),
    epochs: int | None = None,
    patience: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """The complete, checked configuration of a run (before it is bound to its data).

    Layers, later winning: the defaults, the backbone's own train defaults
    (`Config.train_defaults`), the method's defaults for the backbone (`run_defaults`),
    `overrides` (sections as a dict), the YAML file, `--set` pairs, then the
    --epochs/--patience flags."""
    from guider.methods import method_class
    from guider.models import get_class

    model_class = get_class(backbone)
    objective = method_class(method)
    problem = objective.backbone_problem(backbone)
    if problem is not None:
        raise ConfigError(problem)
    cli_train = {k: v for k, v in {"epochs": epochs, "patience": patience}.items() if v is not None}
    backbone_train = {"train": dict(model_class.Config.train_defaults)}  # e.g. LATTICE's lr schedule
    method_defaults = objective.run_defaults(backbone)  # e.g. as_released's cadence and student settings
    given = deep_merge(
        backbone_train, method_defaults, overrides or {}, load_yaml(config_file), parse_set(sets), {"train": cli_train}
    )
    known = ["model", "train", *objective.sections]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r} for method {method!r}; known: {', '.join(known)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    sections = {name: kind.build(given.get(name), name) for name, kind in objective.sections.items()}
    return RunConfig(
        backbone=backbone,
        method=method,
        seed=int(seed),
        model=model_class.Config.build(given.get("model"), "model"),
        train=TrainConfig.build(given.get("train"), "train"),
        sections=sections,
    )


def rebuild_run_config(saved: dict[str, Any]) -> RunConfig:
    """The RunConfig a config.json or checkpoint stored (`RunConfig.to_dict()`), checked again."""
    try:
        head = {key: saved[key] for key in ("backbone", "method", "seed")}
    except (KeyError, TypeError):
        raise ConfigError("not a resolved run config: backbone, method and seed are required") from None
    meta = {"backbone", "method", "seed", "dataset", "data_fingerprint", "data", "device"}
    sections = {key: value for key, value in saved.items() if key not in meta}
    config = resolve_run_config(head["backbone"], method=head["method"], seed=head["seed"], overrides=sections)
    return dataclasses.replace(config, dataset=saved.get("dataset"), data_fingerprint=saved.get("data_fingerprint"))
