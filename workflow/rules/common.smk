"""Glue of the workflow: config loading and validation, study targets, per-rule arguments.

Rules stay declarative (inputs, outputs, one `guider ...` command); every decision that
depends on the config is a function here. Paths:

    resources/<dataset>/                                   downloads (real datasets)
    results/data/<dataset>/base/                           prepared or generated dataset
    results/data/<dataset>/<kind><r>/                      noisy copy: kind add|delete|modality, ratio r
    results/data/<dataset>/natural/                        copy with low-rated rows labelled as noise
    results/runs/<dataset>/<data>/<backbone>/<method>/seed<k>/   one training run
    results/tuning/<dataset>/<backbone>/<method>/point<k>/       one grid point (tuning seed)
    results/tuning/<dataset>/<backbone>/<method>.json            the tuning record (guider tune select)
    results/summary/ results/tables/ results/figures/      aggregates
    results/logs/                                          one log per job
"""

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

min_version("9.0")

try:  # the package's registries and typed configs check the config (installed, or this checkout)
    import guider  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(workflow.basedir)))
from guider import tuning, workflow_config
from guider.gpu_claim import JOBS_PER_GPU_ENV, auto_jobs_per_gpu
from guider.objective import available_objectives
from guider.report.labels import DENOISERS

# --- config --------------------------------------------------------------------------
# The paper reproduction is the default; `--configfile FILE` replaces it (a `configfile:`
# directive would be *merged* with FILE, mixing the paper's datasets into a demo run).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


if "variants" in config:  # the 0.1 name of `methods`, accepted for one release
    if "methods" in config:
        raise WorkflowError("config: both 'methods' and its deprecated name 'variants' are set; keep 'methods'")
    logger.warning("guider: config key 'variants' is deprecated; call it 'methods'")
    config["methods"] = config.pop("variants")


if "tuning" in config and config["tuning"] is None:
    del config["tuning"]  # `tuning: null` means no tuning, like no section (the validator cannot fill a null)


def _validate_with_registries() -> None:
    """Validate against the schema whose backbone and method enums come from the registries."""
    schema = workflow_config.config_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "config.schema.yaml"
        path.write_text(yaml.safe_dump(schema))
        validate(config, str(path))


_validate_with_registries()

DATASETS = config["datasets"]
METHODS = available_objectives()  # every registered training method (`guider train --method`)
CONDA_ENV = "../../envs/guider.yaml"  # relative to workflow/rules/; used with --sdm conda
RATIO_KINDS = ["add", "delete", "modality"]  # noise kinds with a ratio (guider.report.runs.RATIO_KINDS)
FIGURES = ["comparison", "curves"]  # always drawn; "ablation", "noise_<kind>", "detection" when the study runs
ALL_FIGURES = ["comparison", "curves", "ablation", *(f"noise_{k}" for k in RATIO_KINDS), "detection"]


def _check_subset(section: str, key: str, allowed) -> None:
    unknown = set(config[section][key]) - set(allowed)
    if unknown:
        raise WorkflowError(f"config {section}.{key}: {sorted(unknown)} not among the configured {sorted(allowed)}")


def _check_sources() -> None:
    """Every dataset names a source that exists: a registry entry or an MMRec folder."""
    registry = dataset_registry()
    for name, spec in DATASETS.items():
        if spec["source"] == "download" and name not in registry:
            raise WorkflowError(
                f"config datasets.{name}: source 'download' but {name!r} is not in the "
                f"dataset registry ({', '.join(registry)})"
            )
        if spec["source"] == "mmrec":
            folder = spec.get("path")
            if not folder or not Path(folder).is_dir():
                raise WorkflowError(
                    f"config datasets.{name}.path: source 'mmrec' needs an existing folder, got {folder!r}"
                )
            if len(list(Path(folder).glob("*.inter"))) != 1:
                raise WorkflowError(f"config datasets.{name}.path: {folder} must hold exactly one <name>.inter file")


def _check_config() -> None:
    """Cross-references the schema cannot express."""
    _check_subset("ablation", "datasets", DATASETS)
    _check_subset("noise", "datasets", DATASETS)
    _check_sources()
    for section in ("ablation", "noise"):
        if config[section]["datasets"] and not config[section]["backbones"]:
            raise WorkflowError(f"config {section}: datasets are listed but no backbones")
    _check_noise()
    if not {"none", "paper"} <= set(config["methods"]):
        raise WorkflowError("config methods: the main table compares 'paper' with 'none'; list both")


def _check_noise() -> None:
    """The noise study's kinds have what they need: a ratio > 0 for the ratio kinds, item
    features for `modality`, fractions below 1 for `delete`."""
    noise = config["noise"]
    if not noise["datasets"]:
        return
    if not noise["kinds"]:
        raise WorkflowError("config noise.kinds: the noise study lists datasets but no noise kinds")
    ratio_kinds = [k for k in noise["kinds"] if k in RATIO_KINDS]
    if ratio_kinds and not [r for r in noise["ratios"] if r > 0]:
        raise WorkflowError(f"config noise.ratios: kinds {ratio_kinds} need at least one ratio > 0")
    if "delete" in noise["kinds"] and max(noise["ratios"], default=0) >= 1:
        raise WorkflowError("config noise.ratios: kind 'delete' removes a fraction of train; ratios must be < 1")
    if "modality" in noise["kinds"] and max(noise["ratios"], default=0) > 1:
        raise WorkflowError("config noise.ratios: kind 'modality' swaps a fraction of items; ratios must be <= 1")
    for dataset in noise["datasets"] if "modality" in noise["kinds"] else []:
        needed = {"text", "image"} if noise["modality"] == "both" else {noise["modality"]}
        missing = needed - dataset_modalities(dataset)
        if missing:
            raise WorkflowError(
                f"config noise: kind 'modality' swaps {noise['modality']} features but dataset {dataset} has no "
                f"{' or '.join(sorted(missing))} features"
            )


# --- GPU scheduling ------------------------------------------------------------------
def visible_gpu_count() -> int:
    """GPUs this machine shows to jobs: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [v for v in visible.split(",") if v.strip()]
        return 0 if entries in ([], ["-1"]) else len(entries)
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def gpu_memory_gib() -> list[float]:
    """Total memory of each visible GPU in GiB (nvidia-smi), [] when it cannot be read."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    try:
        listing = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [float(line) / 1024 for line in listing.split() if line.replace(".", "", 1).isdigit()]


def jobs_per_gpu() -> int:
    """Training and feature jobs sharing one card: train.jobs_per_gpu, or when null one job
    per 20 GiB of the smallest card (1 below 40 GiB, at most 8; guider.gpu_claim.auto_jobs_per_gpu)."""
    chosen = config["train"]["jobs_per_gpu"]
    return chosen if chosen is not None else auto_jobs_per_gpu(min(gpu_memory_gib(), default=0.0))


# Training and feature jobs request gpu=1: one slot. With GPUs, the `gpu` resource holds
# visible GPUs x jobs_per_gpu slots, so at most that many such jobs run at a time (the
# rest queue), and each job claims a free slot on some card (guider.gpu_claim, told the
# slot count through $GUIDER_JOBS_PER_GPU, which jobs inherit from this process); without
# GPUs the resource is left unconstrained and jobs run on CPU. A profile cannot count
# GPUs, so the cap is set here unless `--resources gpu=N` (or a profile) set one.
GPU_COUNT = visible_gpu_count()
JOBS_PER_GPU = jobs_per_gpu()
os.environ[JOBS_PER_GPU_ENV] = str(JOBS_PER_GPU)  # not a param of the rules, so changing it reruns nothing
if GPU_COUNT and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", GPU_COUNT * JOBS_PER_GPU)
logger.info(
    f"guider: {GPU_COUNT} visible GPU(s), {JOBS_PER_GPU} job(s) per GPU; GPU jobs at a time: "
    + (str(workflow.global_resources["gpu"].value) if "gpu" in workflow.global_resources else "unlimited (CPU)")
)


def job_resources(group: str) -> dict:
    return config["resources"][group]


# --- datasets ------------------------------------------------------------------------
def datasets_by_source(source: str) -> list[str]:
    return [name for name, spec in DATASETS.items() if spec["source"] == source]


def name_pattern(names) -> str:
    """A wildcard constraint matching exactly `names` (a pattern matching nothing if empty)."""
    return "|".join(sorted(names)) or "(?!x)x"


def data_dir(dataset: str, data: str) -> str:
    return f"results/data/{dataset}/{data}"


def noise_data(kind: str, ratio: float | None = None) -> str:
    """Folder name of a noise level (guider.report.runs.data_name): ratio 0 -> base,
    (add, 0.2) -> add0.2, natural -> natural."""
    if kind == "natural":
        return "natural"
    return "base" if ratio == 0 else f"{kind}{ratio:g}"


def noise_levels() -> list[str]:
    """Data folders of the noise study, kind by kind (base once, for ratio 0)."""
    noise = config["noise"]
    levels = [noise_data(k, r) for k in noise["kinds"] if k in RATIO_KINDS for r in noise["ratios"]]
    levels += ["natural"] if "natural" in noise["kinds"] else []
    return list(dict.fromkeys(levels))


def noise_args(wildcards) -> str:
    """`guider data noise` options of one kind, from config noise."""
    noise = config["noise"]
    kind = wildcards.get("kind", "natural")
    args = [f"--kind {kind}", f"--seed {noise['seed']}"]
    if kind == "natural":
        args.append(f"--max-noisy-rating {noise['max_noisy_rating']}")
        if noise["eval_min_rating"] is not None:
            args.append(f"--eval-min-rating {noise['eval_min_rating']}")
        return " ".join(args)
    args.append(f"--ratio {wildcards.ratio}")
    if kind == "add":
        args.append(f"--mode {noise['mode']}")
    if kind == "modality":
        args.append(f"--modality {noise['modality']}")
    return " ".join(args)


@functools.cache
def dataset_registry() -> dict:
    """The real datasets' registry (guider/data/datasets.yaml)."""
    return yaml.safe_load((Path(workflow.basedir) / "guider/data/datasets.yaml").read_text())


def registry_files(dataset: str) -> list[str]:
    """Upstream files `guider data download` writes for `dataset`, minus the skipped parts."""
    skip = set(DATASETS[dataset]["skip"])
    return [f["name"] for f in dataset_registry()[dataset]["files"] if f["role"] not in skip]


def download_outputs(dataset: str) -> list[str]:
    files = [f"resources/{dataset}/{name}" for name in registry_files(dataset)]
    if "images" not in DATASETS[dataset]["skip"]:
        files.append(f"resources/{dataset}/images_failed.tsv")
    return files


def download_args(dataset: str) -> str:
    spec = DATASETS[dataset]
    args = [f"--skip {part}" for part in spec["skip"]]
    if spec["mirror"]:
        args.append(f"--mirror {spec['mirror']}")
    return " ".join(args)


def synthetic_args(wildcards) -> str:
    spec = DATASETS[wildcards.dataset]["synthetic"]
    args = [f"--preset {spec['preset']}", f"--misaligned-ratio {spec['misaligned_ratio']}", f"--seed {spec['seed']}"]
    args += [f"--{key} {spec[key]}" for key in ("users", "items") if spec[key] is not None]
    return " ".join(args)


def mmrec_files(wildcards) -> list[str]:
    """The MMRec folder's interaction file and whichever feature files it ships."""
    folder = Path(DATASETS[wildcards.dataset]["path"])
    features = [folder / name for name in workflow_config.MODALITY_FILES.values() if (folder / name).is_file()]
    return [str(p) for p in [*folder.glob("*.inter"), *features]]


def feature_args(modality: str):
    def args(wildcards) -> str:
        spec = DATASETS[wildcards.dataset]["features"][modality]
        size = spec.get("image_size")
        return f"--encoder {spec['encoder']}" + (f" --image-size {size}" if size else "")

    return args


@functools.cache
def dataset_modalities(dataset: str) -> frozenset:
    """Item features a dataset's training runs get: an MMRec folder ships its own (or none);
    downloaded and synthetic data are encoded by the text and image feature rules."""
    spec = DATASETS[dataset]
    if spec["source"] == "mmrec":
        return frozenset(workflow_config.folder_modalities(spec["path"]))
    return frozenset({"text", "image"})


def base_data_files(dataset: str) -> dict:
    """The base folder: written by three jobs (data, text, image features), or by one import."""
    folder = data_dir(dataset, "base")
    if DATASETS[dataset]["source"] == "mmrec":
        return {"meta": f"{folder}/dataset.json"}
    return {"meta": f"{folder}/dataset.json", "text": f"{folder}/text_feat.npy", "image": f"{folder}/image_feat.npy"}


def train_data_files(wildcards) -> dict:
    """A noisy copy is written whole (features included) by one job."""
    if wildcards.data == "base":
        return base_data_files(wildcards.dataset)
    return {"meta": f"{data_dir(wildcards.dataset, wildcards.data)}/dataset.json"}


# --- runs ----------------------------------------------------------------------------
RUN = "results/runs/{dataset}/{data}/{backbone}/{method}/seed{seed}"


def _study_keys() -> list[tuple]:
    """(dataset, data, backbone, method) of every run the studies ask for, without duplicates."""
    main = [(d, "base", b, m) for d in DATASETS for b in config["backbones"] for m in config["methods"]]
    abl = config["ablation"]
    ablation = [(d, "base", b, m) for d in abl["datasets"] for b in abl["backbones"] for m in abl["methods"]]
    noise = config["noise"]
    noisy = [
        (d, x, b, m)
        for d in noise["datasets"]
        for b in noise["backbones"]
        for m in noise["methods"]
        for x in noise_levels()
    ]
    return list(dict.fromkeys(main + ablation + noisy))


def _runnable_keys() -> list[tuple]:
    """The study's runs minus those that cannot train (no item features, a method that does not
    wrap the backbone); logs what is left out."""
    kept, study = [], _study_keys()
    for dataset in DATASETS:
        keys = [k for k in study if k[0] == dataset]
        pairs, skipped = workflow_config.skipped_runs(
            dict.fromkeys((b, m) for _, _, b, m in keys), dataset_modalities(dataset)
        )
        if skipped:
            left_out = "; ".join(f"{b}/{m} ({why})" for (b, m), why in skipped.items())
            logger.info(f"guider: dataset {dataset}: skipping the runs that cannot train on it: {left_out}")
        kept += [k for k in keys if (k[2], k[3]) in set(pairs)]
    return kept


STUDY_KEYS = _runnable_keys()


def _check_runs() -> None:
    """Each (backbone, method) resolves to a valid run config with its overrides (before any job)."""
    try:
        workflow_config.check_runs(config["train"], [(b, m) for _, _, b, m in STUDY_KEYS])
    except ValueError as err:
        raise WorkflowError(str(err)) from None


_check_config()
_check_runs()


def study_runs() -> list[dict]:
    """Every run to train, one per seed."""
    seeds = config["seeds"]
    return [dict(dataset=d, data=x, backbone=b, method=m, seed=s) for (d, x, b, m) in STUDY_KEYS for s in seeds]


def run_files(name: str) -> list[str]:
    return [f"{RUN.format(**run)}/{name}" for run in study_runs()]


# --- tuning --------------------------------------------------------------------------
TUNING = config.get("tuning")  # None: every run at its configured point
TUNING_ROOT = "results/tuning"


def is_tuned(dataset: str, backbone: str) -> bool:
    """Whether runs of this (dataset, backbone) train a tuned point."""
    if TUNING is None:
        return False
    datasets, backbones = TUNING["datasets"], TUNING["backbones"]
    return (datasets is None or dataset in datasets) and (backbones is None or backbone in backbones)


@functools.cache
def tuning_grid(backbone: str, method: str) -> dict:
    """The grid of (backbone, method): the backbone's for plain training, the method's own otherwise."""
    return tuning.grid_for(backbone, method, TUNING["backbone_grids"], TUNING["method_grids"])


def record_method(backbone: str, method: str) -> str:
    """The method whose tuning record a run uses: its own when it has a grid, else plain's."""
    return method if method == tuning.PLAIN or tuning_grid(backbone, method) else tuning.PLAIN


@functools.cache
def tuning_points(backbone: str, method: str) -> tuple:
    """The grid points trained for (backbone, method), in grid order (capped by max_points)."""
    grid = tuning_grid(backbone, method)
    return tuple(tuning.grid_points(grid, TUNING["max_points"], TUNING["subset_seed"]))


def tuning_points_of(key: tuple) -> tuple:
    """Grid points of a (dataset, backbone, method) tuning key; () for a method that inherits."""
    _, backbone, method = key
    return tuning_points(backbone, method) if record_method(backbone, method) == method else ()


def tuning_record(dataset: str, backbone: str, method: str) -> str:
    return f"{TUNING_ROOT}/{dataset}/{backbone}/{method}.json"


def tuned_input(wildcards) -> dict:
    """The tuning record a training run reads (`--tuned`), when its (dataset, backbone) is tuned."""
    if not is_tuned(wildcards.dataset, wildcards.backbone):
        return {}
    method = record_method(wildcards.backbone, wildcards.method)
    return {"tuned": tuning_record(wildcards.dataset, wildcards.backbone, method)}


def tuning_keys() -> list[tuple]:
    """(dataset, backbone, method) of every tuning record the studies need."""
    keys = []
    for dataset, _, backbone, method in STUDY_KEYS:
        if is_tuned(dataset, backbone):
            keys += [(dataset, backbone, tuning.PLAIN), (dataset, backbone, record_method(backbone, method))]
    return list(dict.fromkeys(keys))


def _check_tuning() -> None:
    """Grids resolve to valid run configs and a method's grid does not repeat a backbone key
    (the point trains on top of plain training's choice, which would otherwise win)."""
    for _, backbone, method in tuning_keys():
        grid = tuning_grid(backbone, method)
        if method != tuning.PLAIN:
            shared = set(grid) & set(tuning_grid(backbone, tuning.PLAIN))
            if shared:
                raise WorkflowError(
                    f"config tuning: the grid of method {method} repeats {sorted(shared)} of {backbone}'s grid; "
                    "tune those keys in tuning.backbone_grids"
                )
        for point in tuning_points(backbone, method)[:1] + tuning_points(backbone, method)[-1:]:
            try:
                workflow_config.check_runs(config["train"], [(backbone, method)], extra_sets=tuning.point_sets(point))
            except ValueError as err:
                raise WorkflowError(f"config tuning: {backbone}/{method} grid point {point}: {err}") from None


def tuning_point_runs(wildcards) -> list[str]:
    points = tuning_points(wildcards.backbone, wildcards.method)
    folder = f"{TUNING_ROOT}/{wildcards.dataset}/{wildcards.backbone}/{wildcards.method}"
    return [f"{folder}/point{k}/metrics.json" for k in range(len(points))]


def tuning_inherit_input(wildcards) -> dict:
    """Plain training's record, for a method's grid points and its record."""
    if wildcards.method == tuning.PLAIN:
        return {}
    return {"inherit": tuning_record(wildcards.dataset, wildcards.backbone, tuning.PLAIN)}


def tune_point_args(wildcards, input) -> str:
    """`guider train` options of one grid point: the run's usual options at the tuning seed,
    plain training's chosen point (`--tuned`) for a method's grid, the point's settings."""
    point = tuning_points(wildcards.backbone, wildcards.method)[int(wildcards.point)]
    args = [run_args(wildcards.backbone, wildcards.method, TUNING["seed"])]
    args += [f"--tuned {input.inherit}"] if "inherit" in input.keys() else []
    args += [f"--set {shlex.quote(pair)}" for pair in tuning.point_sets(point)]
    return " ".join(args)


def tune_select_args(wildcards, input) -> str:
    grid = tuning_grid(wildcards.backbone, wildcards.method)
    args = [f"--grid {shlex.quote(json.dumps(grid))}", f"--subset-seed {TUNING['subset_seed']}"]
    args += [f"--max-points {TUNING['max_points']}"] if TUNING["max_points"] is not None else []
    args += [f"--inherit {input.inherit}"] if "inherit" in input.keys() else []
    runs = [os.path.dirname(path) for path in input.runs]
    args += ["--runs", *runs] if runs else []
    return " ".join(args)


if TUNING is not None:
    _check_tuning()


def train_args(wildcards, input) -> str:
    """The run's options, and `--tuned RECORD` when its (dataset, backbone) is tuned (one
    param, so switching tuning on reruns exactly the runs whose settings change)."""
    tuned = [f"--tuned {input.tuned}"] if "tuned" in input.keys() else []
    return " ".join([run_args(wildcards.backbone, wildcards.method, wildcards.seed), *tuned])


def run_args(backbone: str, method: str, seed) -> str:
    """`guider train` options of one run: method, seed, device, epochs, the config's overrides."""
    train = config["train"]
    args = [f"--method {method}", f"--seed {seed}", f"--device {train['device']}"]
    args += [f"--{key} {train[key]}" for key in ("epochs", "patience") if train[key] is not None]
    args += [f"--set {pair}" for pair in workflow_config.override_pairs(train, backbone, method)]
    return " ".join(args)


# --- report --------------------------------------------------------------------------
def has_ablation() -> bool:
    """Whether some run on the base data uses a method other than plain and GUIDER."""
    return any(data == "base" and method not in ("none", "paper") for _, data, _, method in STUDY_KEYS)


def has_baselines() -> bool:
    """Whether some run on the base data uses a denoising baseline (T-CE, R-CE, DA-MRS)."""
    return any(data == "base" and method in DENOISERS for _, data, _, method in STUDY_KEYS)


def has_noise_study() -> bool:
    return any(data != "base" for _, data, _, _ in STUDY_KEYS)


def noise_figure_kinds() -> list[str]:
    """Ratio kinds with at least one run on a noisy copy: one robustness figure each."""
    return [k for k in RATIO_KINDS if any(d.startswith(k) for _, d, _, _ in STUDY_KEYS)]


def figure_names() -> list[str]:
    names = list(FIGURES)
    names += ["ablation"] if has_ablation() else []
    names += [f"noise_{k}" for k in noise_figure_kinds()]
    labelled = [d for _, d, _, m in STUDY_KEYS if m == "paper" and d != "base" and not d.startswith("delete")]
    names += ["detection"] if labelled else []  # delete copies have no labels to score against
    return names


def figure_command(wildcards) -> str:
    """The `guider report figure` kind of a figure file: noise_<kind> files are `noise`."""
    return "noise" if wildcards.figure.startswith("noise_") else wildcards.figure


def figure_inputs(wildcards) -> dict:
    inputs = {"runs": "results/summary/runs.csv"}
    if wildcards.figure == "curves":
        inputs["curves"] = "results/summary/training_curves.csv"
    return inputs


def figure_args(wildcards, input) -> str:
    """Per-figure options of `guider report figure`: the metric, and the curves for `curves`."""
    args = [] if wildcards.figure == "detection" else [f"--metric {config['report']['figure_metric']}"]
    if wildcards.figure.startswith("noise_"):
        args.append(f"--noise-kind {wildcards.figure.removeprefix('noise_')}")
    if wildcards.figure == "curves":
        args.append(f"--curves {input.curves}")
    return " ".join(args)


def note_args() -> str:
    note = config["report"]["note"]
    return f"--note {shlex.quote(note)}" if note else ""


def report_targets() -> list[str]:
    targets = [
        "results/summary/runs.csv",
        "results/summary/metrics.json",
        "results/tables/main.md",
        "results/tables/main.tex",
    ]
    if has_ablation():
        targets += ["results/tables/ablation.md", "results/tables/ablation.tex"]
    if has_baselines():
        targets += ["results/tables/baselines.md", "results/tables/baselines.tex"]
    if has_noise_study():
        targets += ["results/summary/noise_curve.csv", "results/tables/robustness.md", "results/tables/robustness.tex"]
    if any(tuning_points_of(key) for key in tuning_keys()):
        targets += ["results/tables/tuning.md", "results/tables/tuning.tex"]
    targets += [f"results/figures/{name}.{fmt}" for name in figure_names() for fmt in ("png", "pdf")]
    return targets


wildcard_constraints:
    dataset=name_pattern(DATASETS),
    data=r"base|natural|(add|delete|modality)[0-9.]+",
    backbone=r"[A-Za-z0-9_]+",
    method=name_pattern(METHODS),
    seed=r"[0-9]+",
