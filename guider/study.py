"""The study: every training a workflow config asks for, what its run folder is called, which
options it gets, and which tables and figures follow. Plain Python: the Snakemake rules,
`guider plan`, the tests and the docs' job counts all ask this one definition.

    study = Study.from_file("config/config.yaml")
    study.counts()                  # {rule: jobs}: what `snakemake -n` lists for a fresh checkout
    [run.folder for run in study.runs()]   # every training, study runs and tuning grid points
    study.targets()                 # the tables, figures and summaries of the report

A config is validated once, here: the JSON schema (guider/study.schema.yaml, whose backbone,
method and noise-kind enums and noise options come from the registries, plug-ins included),
then what a schema cannot say (cross-references, ratios a noise kind accepts, item features a
run needs, overrides that resolve to a valid run config, tuning grids). Every string must be
free of control characters, so no value can split a command line; the rules still quote every
value they pass (`{params.args:q}`: the argument builders here return argument lists, never
shell text).

Paths (relative to the workflow's working directory):

    resources/<dataset>/                                    downloads (real datasets)
    results/data/<dataset>/base/                            prepared, generated or imported dataset
    results/data/<dataset>/<level>/                         noisy copy: a noise kind's folder (add0.2, natural)
    results/runs/<dataset>/<level>/<backbone>/<method>/seed<k>/   one training run
    results/tuning/<dataset>/<backbone>/<method>/point<k>/        one grid point (tuning seed, base data)
    results/tuning/<dataset>/<backbone>/<method>.json            the tuning record (guider tune select)
    results/summary/ results/tables/ results/figures/       aggregates
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from guider import tuning
from guider.config import resolve_run_config
from guider.config.sections import ConfigError
from guider.data.noise import BASE_LEVEL, level_pattern, noise_kind, noise_kinds, noise_options_schema

SCHEMA_FILE = Path(__file__).with_name("study.schema.yaml")
MODALITY_FILES = {"text": "text_feat.npy", "image": "image_feat.npy"}
RUNS_ROOT = "results/runs"
TUNING_ROOT = "results/tuning"
DATA_ROOT = "results/data"
FIGURES = ("comparison", "curves")  # always drawn; ablation, noise_<kind> and detection when the study has them
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class StudyError(ValueError):
    """The workflow config cannot define a study; the message names the config key."""


# --- the config ------------------------------------------------------------------------
def config_schema(schema_file: str | Path = SCHEMA_FILE) -> dict[str, Any]:
    """The workflow schema with the registries' names as enums and the noise kinds' options."""
    from guider.methods import available_methods
    from guider.models import registered

    schema = yaml.safe_load(Path(schema_file).read_text())
    schema["definitions"]["backbone"]["enum"] = registered()
    schema["definitions"]["method"]["enum"] = available_methods()
    schema["definitions"]["noise_kind"]["enum"] = noise_kinds()
    schema["properties"]["noise"]["properties"].update(noise_options_schema())
    return schema


def validated(config: Mapping[str, Any], schema_file: str | Path = SCHEMA_FILE) -> dict[str, Any]:
    """A copy of `config` checked against the schema, with the schema's defaults filled in."""
    config = copy.deepcopy(dict(config))
    if "variants" in config:
        raise StudyError("config key 'variants' was renamed 'methods' in 0.3 and is gone since 0.4; call it 'methods'")
    if "tuning" in config and config["tuning"] is None:
        del config["tuning"]  # `tuning: null` means no tuning, like no section
    _check_characters(config, "config")
    validator = _defaults_validator(config_schema(schema_file))
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise StudyError(f"config {where}: {error.message}")
    _check_path_variables(config)
    return config


_PATH_VARIABLE = re.compile(r"<[a-z][a-z0-9_]*>")  # Snakemake 9's pathvar syntax (no escape exists)


def _check_path_variables(config: Mapping[str, Any]) -> None:
    """An MMRec folder becomes a rule's input path, where Snakemake 9 expands `<name>` as a path
    variable (`<results>` silently, an unknown name with an error at DAG time); refuse it here."""
    for name, dataset in config.get("datasets", {}).items():
        found = _PATH_VARIABLE.search(dataset.get("path") or "")
        if found:
            raise StudyError(
                f"config datasets.{name}.path: {found.group()!r} reads as a Snakemake path variable "
                "(<lowercase name>); rename the folder or link it under a name without one"
            )


def _check_characters(node: Any, where: str) -> None:
    """No key or string value may hold a control character (a newline would split a command)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str) and _CONTROL.search(key):
                raise StudyError(f"{where}: key {key!r} holds a control character")
            _check_characters(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            _check_characters(value, f"{where}[{index}]")
    elif isinstance(node, str) and _CONTROL.search(node):
        raise StudyError(f"{where}: {node!r} holds a control character (newline, tab, ...); remove it")


def _defaults_validator(schema: dict[str, Any]):
    """A Draft 2020-12 validator that fills in each property's default before checking it (as
    Snakemake's `validate` does), with a fresh copy of every default."""
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from properties(validator, props, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": fill_defaults})(schema)


def load_config(path: str | Path) -> dict[str, Any]:
    """A workflow config file as a dict; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise StudyError(f"{path}: cannot read the workflow config ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise StudyError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a workflow config is a YAML mapping (datasets, backbones, ...)")
    return data


def folder_modalities(folder: str | Path) -> set[str]:
    """The item features an MMRec-layout folder ships (its text_feat.npy / image_feat.npy)."""
    return {name for name, file in MODALITY_FILES.items() if (Path(folder) / file).is_file()}


def unmet_requirement(backbone: str, method: str, modalities: set[str]) -> str | None:
    """Why `backbone` with `method` cannot train on data with `modalities`, or None."""
    from guider.methods import method_class
    from guider.models import get_class

    if get_class(backbone).uses_features and not modalities:
        return f"backbone {backbone} needs item features"
    problem = method_class(method).backbone_problem(backbone)
    if problem is not None:
        return problem
    need = method_class(method).requires_features
    if need == "any" and not modalities:
        return f"method {method} needs item features"
    if need == "both" and modalities != {"text", "image"}:
        return f"method {method} needs text and image features"
    return None


def override_pairs(train: Mapping[str, Any], backbone: str, method: str) -> list[str]:
    """The `--set key=value` pairs of one run: train.overrides, then the backbone's, then the method's."""
    merged: dict[str, Any] = {}
    for layer in (
        train.get("overrides") or {},
        (train.get("backbone_overrides") or {}).get(backbone) or {},
        (train.get("method_overrides") or {}).get(method) or {},
    ):
        merged.update(layer)
    return [f"{key}={_yaml_scalar(value)}" for key, value in merged.items()]


def length_flags(train: Mapping[str, Any], pairs: list[str]) -> dict[str, Any]:
    """`guider train --epochs/--patience` from the config's train section, except where a
    backbone's or method's overrides set train.epochs / train.patience (a flag would win over
    their `--set`: BM3's slow start needs more epochs than the others)."""
    overridden = {pair.split("=", 1)[0] for pair in pairs}
    return {key: None if f"train.{key}" in overridden else train.get(key) for key in ("epochs", "patience")}


def _yaml_scalar(value: Any) -> str:
    """`value` as `--set` parses it back (YAML): true/false, numbers, strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- one training ----------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One training of the study: a study run (`point` None) or a tuning grid point."""

    dataset: str
    data: str  # the data level: base, or a noisy copy's folder (add0.2, natural)
    backbone: str
    method: str
    seed: int
    point: int | None = None
    study: Study = field(compare=False, repr=False, default=None)

    @property
    def is_tuning(self) -> bool:
        return self.point is not None

    @property
    def folder(self) -> str:
        if self.is_tuning:
            return f"{TUNING_ROOT}/{self.dataset}/{self.backbone}/{self.method}/point{self.point}"
        return f"{RUNS_ROOT}/{self.dataset}/{self.data}/{self.backbone}/{self.method}/seed{self.seed}"

    @property
    def data_folder(self) -> str:
        return data_dir(self.dataset, self.data)

    def inputs(self) -> dict[str, str]:
        """The files the training reads: the dataset's, and the tuning record it trains the point of."""
        files = self.study.data_files(self.dataset, self.data)
        record = self.study.tuned_record(self)
        return {**files, **({"tuned": record} if record else {})}

    def train_args(self) -> list[str]:
        """`guider train` arguments besides --data, --backbone and --out (a list, never shell text)."""
        return self.study.train_args(self)


def data_dir(dataset: str, level: str) -> str:
    return f"{DATA_ROOT}/{dataset}/{level}"


# --- the study -------------------------------------------------------------------------
class Study:
    """The trainings, tuning points, data jobs and report targets of one workflow config."""

    def __init__(self, config: Mapping[str, Any], schema_file: str | Path = SCHEMA_FILE):
        from guider.runs.plugins import load_plugins

        plugins = (config or {}).get("plugins") or []
        try:  # first: their names must be in the schema's enums
            load_plugins(plugins if isinstance(plugins, list) else [plugins])
        except ValueError as err:
            raise StudyError(f"config plugins: {err}") from None
        self.config = validated(config, schema_file)
        self.datasets: dict[str, dict[str, Any]] = self.config["datasets"]
        self.train = self.config["train"]
        self.noise = self.config["noise"]
        self.tuning = self.config.get("tuning")
        self.plugins: list[str] = list(self.config.get("plugins") or [])
        self._check_config()
        self.skipped: dict[str, dict[tuple[str, str], str]] = {}
        self.keys = self._runnable_keys()
        self._check_runs()
        if self.tuning is not None:
            self._check_tuning()

    @classmethod
    def from_file(cls, path: str | Path) -> Study:
        try:
            return cls(load_config(path))
        except (StudyError, ConfigError) as err:
            raise StudyError(f"{path}: {err}") from None

    # --- checks a schema cannot express ------------------------------------------------
    def _check_config(self) -> None:
        for section in ("ablation", "noise"):
            self._check_subset(section, "datasets", self.datasets)
            if self.config[section]["datasets"] and not self.config[section]["backbones"]:
                raise StudyError(f"config {section}: datasets are listed but no backbones")
        if self.tuning is not None and self.tuning["datasets"] is not None:
            self._check_subset("tuning", "datasets", self.datasets)
        self._check_sources()
        self._check_noise()
        if not {"none", "paper"} <= set(self.config["methods"]):
            raise StudyError("config methods: the main table compares 'paper' with 'none'; list both")

    def _check_subset(self, section: str, key: str, allowed) -> None:
        unknown = set(self.config[section][key]) - set(allowed)
        if unknown:
            raise StudyError(f"config {section}.{key}: {sorted(unknown)} not among the configured {sorted(allowed)}")

    def _check_sources(self) -> None:
        """Every dataset names a source that exists: a registry entry or an MMRec folder."""
        registry = dataset_registry()
        for name, spec in self.datasets.items():
            if spec["source"] == "download" and name not in registry:
                raise StudyError(
                    f"config datasets.{name}: source 'download' but {name!r} is not in the dataset registry "
                    f"({', '.join(registry)})"
                )
            if spec["source"] == "mmrec":
                folder = spec.get("path")
                if not folder or not Path(folder).is_dir():
                    raise StudyError(
                        f"config datasets.{name}.path: source 'mmrec' needs an existing folder, got {folder!r}"
                    )
                if len(list(Path(folder).glob("*.inter"))) != 1:
                    raise StudyError(f"config datasets.{name}.path: {folder} must hold exactly one <name>.inter file")

    def _check_noise(self) -> None:
        """The noise study's kinds have what they need: ratios they accept, features they swap."""
        noise = self.noise
        if not noise["datasets"]:
            return
        if not noise["kinds"]:
            raise StudyError("config noise.kinds: the noise study lists datasets but no noise kinds")
        ratio_kinds = [k for k in noise["kinds"] if noise_kind(k).has_ratio]
        if ratio_kinds and not [r for r in noise["ratios"] if r > 0]:
            raise StudyError(f"config noise.ratios: kinds {ratio_kinds} need at least one ratio > 0")
        for kind in ratio_kinds:
            for ratio in noise["ratios"]:
                problem = noise_kind(kind).ratio_problem(ratio)
                if problem:
                    raise StudyError(f"config noise.ratios: {problem}")
        for name in noise["kinds"]:
            needed = noise_kind(name).needs(noise) & {"text", "image"}
            for dataset in noise["datasets"]:
                lacking = needed - self.modalities(dataset)
                if lacking:
                    raise StudyError(
                        f"config noise: kind {name!r} needs {' and '.join(sorted(needed))} features but dataset "
                        f"{dataset} has no {' or '.join(sorted(lacking))} features"
                    )

    def _check_runs(self) -> None:
        """Each (backbone, method) resolves to a valid run config with its overrides."""
        for backbone, method in sorted({(b, m) for _, _, b, m in self.keys}):
            self._check_run_config(backbone, method)

    def _check_run_config(self, backbone: str, method: str, extra_sets: list[str] | tuple = ()) -> None:
        try:
            pairs = override_pairs(self.train, backbone, method)
            resolve_run_config(backbone, method=method, sets=[*pairs, *extra_sets], **length_flags(self.train, pairs))
        except ConfigError as err:
            raise StudyError(
                f"config train (overrides, backbone_overrides.{backbone} or method_overrides.{method}) "
                f"for backbone {backbone!r} with method {method!r}: {err}"
            ) from None

    def _check_tuning(self) -> None:
        """Grids resolve to valid run configs and a method's grid does not repeat a backbone key."""
        for _, backbone, method in self.tuning_keys():
            grid = self.tuning_grid(backbone, method)
            if method != tuning.PLAIN:
                shared = set(grid) & set(self.tuning_grid(backbone, tuning.PLAIN))
                if shared:
                    raise StudyError(
                        f"config tuning: the grid of method {method} repeats {sorted(shared)} of {backbone}'s grid; "
                        "tune those keys in tuning.backbone_grids"
                    )
            points = self.tuning_points(backbone, method)
            for point in points[:1] + points[-1:]:
                try:
                    self._check_run_config(backbone, method, tuning.point_sets(point))
                except StudyError as err:
                    raise StudyError(f"config tuning: {backbone}/{method} grid point {point}: {err}") from None

    # --- datasets ------------------------------------------------------------------------
    def by_source(self, source: str) -> list[str]:
        return [name for name, spec in self.datasets.items() if spec["source"] == source]

    @functools.cache
    def modalities(self, dataset: str) -> frozenset:
        """Item features the dataset's runs get: an MMRec folder ships its own (or none);
        downloaded and synthetic data are encoded by the feature rules."""
        spec = self.datasets[dataset]
        if spec["source"] == "mmrec":
            return frozenset(folder_modalities(spec["path"]))
        return frozenset({"text", "image"})

    def base_files(self, dataset: str) -> dict[str, str]:
        """The base folder: written by three jobs (data, text, image features), or by one import."""
        folder = data_dir(dataset, BASE_LEVEL)
        if self.datasets[dataset]["source"] == "mmrec":
            return {"meta": f"{folder}/dataset.json"}
        return {
            "meta": f"{folder}/dataset.json",
            "text": f"{folder}/text_feat.npy",
            "image": f"{folder}/image_feat.npy",
        }

    def data_files(self, dataset: str, level: str) -> dict[str, str]:
        """A noisy copy is written whole (features included) by one job."""
        if level == BASE_LEVEL:
            return self.base_files(dataset)
        return {"meta": f"{data_dir(dataset, level)}/dataset.json"}

    def noise_levels(self) -> list[str]:
        """Data folders of the noise study, kind by kind (base once, for ratio 0)."""
        levels = []
        for name in self.noise["kinds"]:
            kind = noise_kind(name)
            levels += [kind.folder(r) for r in self.noise["ratios"]] if kind.has_ratio else [kind.folder(None)]
        return list(dict.fromkeys(levels))

    def noise_args(self, level: str) -> list[str]:
        """`guider data noise` options of one noisy copy, from config noise."""
        from guider.data.noise import parse_level

        name, ratio = parse_level(level)
        kind = noise_kind(name)
        args = ["--kind", name, "--seed", str(self.noise["seed"])]
        args += ["--ratio", f"{ratio:g}"] if kind.has_ratio else []
        return args + kind.cli_args(self.noise) + self.plugin_args()

    def download_outputs(self, dataset: str) -> list[str]:
        """Upstream files `guider data download` writes, minus the skipped parts."""
        skip = set(self.datasets[dataset]["skip"])
        files = [
            f"resources/{dataset}/{f['name']}" for f in dataset_registry()[dataset]["files"] if f["role"] not in skip
        ]
        return files + ([f"resources/{dataset}/images_failed.tsv"] if "images" not in skip else [])

    def download_args(self, dataset: str) -> list[str]:
        spec = self.datasets[dataset]
        args = [token for part in spec["skip"] for token in ("--skip", part)]
        return args + (["--mirror", spec["mirror"]] if spec["mirror"] else [])

    def synthetic_args(self, dataset: str) -> list[str]:
        spec = self.datasets[dataset]["synthetic"]
        args = ["--name", dataset, "--preset", spec["preset"], "--misaligned-ratio", str(spec["misaligned_ratio"])]
        args += (
            ["--noise-ratio", str(spec["noise_ratio"]), "--noise-mode", spec["noise_mode"]]
            if spec["noise_ratio"]
            else []
        )
        return args + ["--seed", str(spec["seed"])] + flags(users=spec["users"], items=spec["items"])

    def mmrec_files(self, dataset: str) -> list[str]:
        """The MMRec folder's interaction file and whichever feature files it ships."""
        folder = Path(self.datasets[dataset]["path"])
        features = [folder / name for name in MODALITY_FILES.values() if (folder / name).is_file()]
        return [str(p) for p in [*folder.glob("*.inter"), *features]]

    def feature_args(self, dataset: str, modality: str) -> list[str]:
        spec = self.datasets[dataset]["features"][modality]
        size = spec.get("image_size")
        return ["--encoder", spec["encoder"], *(["--image-size", str(size)] if size else [])]

    # --- runs --------------------------------------------------------------------------
    def _study_keys(self) -> list[tuple[str, str, str, str]]:
        """(dataset, level, backbone, method) of every run the studies ask for, without duplicates."""
        config = self.config
        main = [(d, BASE_LEVEL, b, m) for d in self.datasets for b in config["backbones"] for m in config["methods"]]
        abl = config["ablation"]
        ablation = [(d, BASE_LEVEL, b, m) for d in abl["datasets"] for b in abl["backbones"] for m in abl["methods"]]
        noise = self.noise
        levels = self.noise_levels()
        noisy = [
            (d, x, b, m)
            for d in noise["datasets"]
            for b in noise["backbones"]
            for m in noise["methods"]
            for x in levels
        ]
        return list(dict.fromkeys(main + ablation + noisy))

    def _runnable_keys(self) -> list[tuple[str, str, str, str]]:
        """The study's runs minus those that cannot train (no item features, a method that does not
        wrap the backbone); `skipped` records what is left out and why."""
        kept = []
        keys = self._study_keys()
        for key in [k for dataset in self.datasets for k in keys if k[0] == dataset]:  # grouped by dataset
            dataset, _, backbone, method = key
            reason = unmet_requirement(backbone, method, set(self.modalities(dataset)))
            if reason is None:
                kept.append(key)
            else:
                self.skipped.setdefault(dataset, {})[(backbone, method)] = reason
        return kept

    def study_runs(self) -> list[RunSpec]:
        """Every study run, one per seed."""
        seeds = self.config["seeds"]
        return [RunSpec(d, x, b, m, s, None, self) for (d, x, b, m) in self.keys for s in seeds]

    def runs(self) -> list[RunSpec]:
        """Every training: the study's runs, then the tuning grid points."""
        points = [
            RunSpec(d, BASE_LEVEL, b, m, self.tuning["seed"], k, self)
            for d, b, m in self.tuning_keys()
            for k in range(len(self.tuning_points_of(b, m)))
        ]
        return self.study_runs() + points

    def run(self, dataset: str, data: str, backbone: str, method: str, seed: int | str) -> RunSpec:
        return RunSpec(dataset, data, backbone, method, int(seed), None, self)

    def tuning_point(self, dataset: str, backbone: str, method: str, point: int | str) -> RunSpec:
        return RunSpec(dataset, BASE_LEVEL, backbone, method, self.tuning["seed"], int(point), self)

    def train_args(self, run: RunSpec) -> list[str]:
        """`guider train` options: method, seed, device, epochs, the config's overrides, the tuning
        record (`--tuned`), a grid point's settings, the plug-ins."""
        train = self.train
        args = ["--method", run.method, "--seed", str(run.seed), "--device", train["device"]]
        pairs = override_pairs(train, run.backbone, run.method)
        args += flags(**length_flags(train, pairs))
        args += [token for pair in pairs for token in ("--set", pair)]
        record = self.tuned_record(run)
        args += ["--tuned", record] if record else []
        if run.is_tuning:
            point = self.tuning_points(run.backbone, run.method)[run.point]
            args += [token for pair in tuning.point_sets(point) for token in ("--set", pair)]
        return args + self.plugin_args()

    def plugin_args(self) -> list[str]:
        return [token for module in self.plugins for token in ("--plugin", module)]

    # --- tuning ------------------------------------------------------------------------
    def is_tuned(self, dataset: str, backbone: str) -> bool:
        """Whether runs of this (dataset, backbone) train a tuned point."""
        if self.tuning is None:
            return False
        datasets, backbones = self.tuning["datasets"], self.tuning["backbones"]
        return (datasets is None or dataset in datasets) and (backbones is None or backbone in backbones)

    @functools.cache
    def tuning_grid(self, backbone: str, method: str) -> dict:
        """The grid of (backbone, method): the backbone's for plain training, the method's own otherwise."""
        return tuning.grid_for(backbone, method, self.tuning["backbone_grids"], self.tuning["method_grids"])

    def record_method(self, backbone: str, method: str) -> str:
        """The method whose tuning record a run uses: its own when it has a grid, else plain's."""
        return method if method == tuning.PLAIN or self.tuning_grid(backbone, method) else tuning.PLAIN

    @functools.cache
    def tuning_points(self, backbone: str, method: str) -> tuple:
        """The grid points trained for (backbone, method), in grid order (capped by max_points)."""
        grid = self.tuning_grid(backbone, method)
        return tuple(tuning.grid_points(grid, self.tuning["max_points"], self.tuning["subset_seed"]))

    def tuning_points_of(self, backbone: str, method: str) -> tuple:
        """Grid points of a tuning key; () for a method that inherits plain training's point."""
        return self.tuning_points(backbone, method) if self.record_method(backbone, method) == method else ()

    def tuning_keys(self) -> list[tuple[str, str, str]]:
        """(dataset, backbone, method) of every tuning record the studies need."""
        keys = []
        for dataset, _, backbone, method in self.keys:
            if self.is_tuned(dataset, backbone):
                keys += [(dataset, backbone, tuning.PLAIN), (dataset, backbone, self.record_method(backbone, method))]
        return list(dict.fromkeys(keys))

    @staticmethod
    def tuning_record(dataset: str, backbone: str, method: str) -> str:
        return f"{TUNING_ROOT}/{dataset}/{backbone}/{method}.json"

    def tuned_record(self, run: RunSpec) -> str | None:
        """The record a training reads with --tuned: a study run its own (or plain's) chosen
        point, a method's grid point plain training's chosen point; None when not tuned."""
        if run.is_tuning:
            return None if run.method == tuning.PLAIN else self.tuning_record(run.dataset, run.backbone, tuning.PLAIN)
        if not self.is_tuned(run.dataset, run.backbone):
            return None
        return self.tuning_record(run.dataset, run.backbone, self.record_method(run.backbone, run.method))

    def tuning_runs(self, dataset: str, backbone: str, method: str) -> list[str]:
        """The grid points' run folders of a tuning record, in grid order."""
        return [
            self.tuning_point(dataset, backbone, method, k).folder
            for k in range(len(self.tuning_points_of(backbone, method)))
        ]

    def tune_select_args(self, dataset: str, backbone: str, method: str) -> list[str]:
        grid = self.tuning_grid(backbone, method)
        args = ["--grid", json.dumps(grid), "--subset-seed", str(self.tuning["subset_seed"])]
        max_points = self.tuning["max_points"]
        args += ["--max-points", str(max_points)] if max_points is not None else []
        if method != tuning.PLAIN:
            args += ["--inherit", self.tuning_record(dataset, backbone, tuning.PLAIN)]
        runs = self.tuning_runs(dataset, backbone, method)
        return args + (["--runs", *runs] if runs else []) + self.plugin_args()

    # --- report ------------------------------------------------------------------------
    def has_ablation(self) -> bool:
        """Whether some run on the base data uses a method other than plain and GUIDER."""
        return any(x == BASE_LEVEL and m not in ("none", "paper") for _, x, _, m in self.keys)

    def has_baselines(self) -> bool:
        """Whether some run on the base data uses a denoising baseline (a method whose role is 'baseline')."""
        from guider.methods import method_class

        return any(x == BASE_LEVEL and method_class(m).role == "baseline" for _, x, _, m in self.keys)

    def has_noise_study(self) -> bool:
        return any(x != BASE_LEVEL for _, x, _, _ in self.keys)

    def noise_figure_kinds(self) -> list[str]:
        """Kinds with a ratio and at least one run on one of their copies: one robustness figure each."""
        from guider.data.noise import parse_level

        levels = {x for _, x, _, _ in self.keys if x != BASE_LEVEL}
        kinds = {parse_level(x)[0] for x in levels}
        return [k for k in noise_kinds() if k in kinds and noise_kind(k).has_ratio]

    def figure_names(self) -> list[str]:
        from guider.data.noise import parse_level

        names = list(FIGURES)
        names += ["ablation"] if self.has_ablation() else []
        names += [f"noise_{k}" for k in self.noise_figure_kinds()]
        labelled = [
            x
            for _, x, _, m in self.keys
            if m == "paper" and x != BASE_LEVEL and noise_kind(parse_level(x)[0]).labels_rows
        ]
        return names + (["detection"] if labelled else [])

    def figure_args(self, figure: str) -> list[str]:
        """Per-figure options of `guider report figure`: the metric, the noise kind (a plug-in's
        kind is known once its module is loaded: --plugin), the curves."""
        report = self.config["report"]
        args = [] if figure == "detection" else ["--metric", report["figure_metric"]]
        args += ["--noise-kind", figure.removeprefix("noise_")] if figure.startswith("noise_") else []
        args += ["--curves", "results/summary/training_curves.csv"] if figure == "curves" else []
        return args + self.plugin_args()

    @staticmethod
    def figure_command(figure: str) -> str:
        """The `guider report figure` kind of a figure file: noise_<kind> files are `noise`."""
        return "noise" if figure.startswith("noise_") else figure

    def all_figures(self) -> list[str]:
        """Every figure name the figure rule can draw (its wildcard constraint)."""
        kinds = [k for k in noise_kinds() if noise_kind(k).has_ratio]
        return [*FIGURES, "ablation", *(f"noise_{k}" for k in kinds), "detection"]

    def note_args(self) -> list[str]:
        note = self.config["report"]["note"]
        return ["--note", note] if note else []

    def table_names(self) -> list[str]:
        names = ["main"]
        names += ["ablation"] if self.has_ablation() else []
        names += ["baselines"] if self.has_baselines() else []
        names += ["robustness"] if self.has_noise_study() else []
        names += ["tuning"] if any(self.tuning_points_of(b, m) for _, b, m in self.tuning_keys()) else []
        return names

    def targets(self) -> list[str]:
        """The report's files: summaries, tables (Markdown and LaTeX), figures (PNG and PDF)."""
        targets = ["results/summary/runs.csv", "results/summary/metrics.json", "results/report/headline.rst"]
        targets += ["results/summary/noise_curve.csv"]  # header only without a noise study (DVC versions it)
        targets += [f"results/tables/{name}.{fmt}" for name in self.table_names() for fmt in ("md", "tex", "html")]
        return targets + [f"results/figures/{name}.{fmt}" for name in self.figure_names() for fmt in ("png", "pdf")]

    # --- counts ------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Jobs per rule of the whole workflow for this config, as `snakemake -n` lists them on a
        checkout with no results (`-F` on one with results)."""
        datasets = list(self.datasets)
        levels = {(d, x) for d, x, _, _ in self.keys if x != BASE_LEVEL}
        counts = {f"download_{d}": 1 for d in self.by_source("download")}
        counts.update(
            prepare=len(self.by_source("download")),
            synthetic=len(self.by_source("synthetic")),
            import_mmrec=len(self.by_source("mmrec")),
            text_features=sum(self.datasets[d]["source"] != "mmrec" for d in datasets),
            image_features=sum(self.datasets[d]["source"] != "mmrec" for d in datasets),
            noisy_copy=len(levels),
            train=len(self.study_runs()),
            tune_point=sum(len(self.tuning_points_of(b, m)) for _, b, m in self.tuning_keys()),
            tune_select=len(self.tuning_keys()),
            collect_runs=1,
            headline=1,
            headline_metrics=1,
            figure=len(self.figure_names()),
            all=1,
        )
        counts.update({f"{name}_table": 1 for name in self.table_names()})
        counts["noise_curve"] = 1
        return {rule: n for rule, n in counts.items() if n}

    def skipped_lines(self, short: bool = True) -> list[str]:
        """What the study leaves out and why: with `short`, one line per dataset with the count,
        the first pair and where the full list is (`guider plan`); else one line per group of
        datasets that skip the same pairs, the pairs grouped by method."""
        if short:
            return [f"dataset {dataset}: skipping the runs that cannot train on it: {_skipped_short(skipped)}"
                    for dataset, skipped in self.skipped.items()]  # fmt: skip
        groups: dict[tuple, list[str]] = {}
        for dataset, skipped in self.skipped.items():
            groups.setdefault(tuple(skipped.items()), []).append(dataset)
        lines = []
        for pairs, datasets in groups.items():
            where = f"dataset {datasets[0]}" if len(datasets) == 1 else f"datasets {', '.join(datasets)}"
            lines.append(f"{where}: skipping the runs that cannot train on it: {_skipped_by_method(dict(pairs))}")
        return lines

    def wildcard_constraints(self) -> dict[str, str]:
        """Snakemake wildcard constraints matching exactly this study's names."""
        from guider.methods import available_methods
        from guider.models import registered

        return {
            "dataset": name_pattern(self.datasets),
            "data": level_pattern(),
            "backbone": name_pattern(registered()),
            "method": name_pattern(available_methods()),
            "seed": r"[0-9]+",
            "point": r"[0-9]+",
        }


def flags(**values: Any) -> list[str]:
    """['--key', 'value', ...] for each value that is not None."""
    return [token for key, value in values.items() if value is not None for token in (f"--{key}", str(value))]


def name_pattern(names) -> str:
    """A regular expression matching exactly `names` (one matching nothing if empty)."""
    return "|".join(re.escape(n) for n in sorted(names)) or "(?!x)x"


@functools.cache
def dataset_registry() -> dict[str, Any]:
    """The real datasets' registry (guider/data/datasets.yaml) as plain data."""
    return yaml.safe_load((Path(__file__).parent / "data" / "download" / "datasets.yaml").read_text())


def _skipped_short(skipped: dict[tuple[str, str], str]) -> str:
    pairs = [f"{b}/{m} ({why})" for (b, m), why in skipped.items()]
    if len(pairs) == 1:
        return pairs[0]
    first = pairs[0] if len(pairs[0]) < 160 else pairs[0][:157] + "..."
    return f"{len(pairs)} (backbone, method) pairs cannot train on it, e.g. {first}; `guider plan` lists them"


def _skipped_by_method(skipped: dict[tuple[str, str], str]) -> str:
    """`b/m (why)` for a pair alone; `m on n backbones: b1, b2, ... (why)` for a method left out
    on several backbones for the same reason (reasons that differ only in the backbone's name
    count as the same: shown for the first backbone)."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (backbone, method), why in skipped.items():
        groups.setdefault((method, re.sub(rf"\b{re.escape(backbone)}\b", "\0", why)), []).append((backbone, why))
    parts = []
    for (method, pattern), items in groups.items():
        first, why = items[0]
        if len(items) == 1:
            parts.append(f"{first}/{method} ({why})")
            continue
        names = ", ".join(backbone for backbone, _ in items)
        why = f"for {first}: {why}" if "\0" in pattern else why
        parts.append(f"{method} on {len(items)} backbones: {names} ({why})")
    return "; ".join(parts)
