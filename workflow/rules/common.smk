"""Glue of the workflow: config loading and validation, study targets, per-rule arguments.

Rules stay declarative (inputs, outputs, one `guider ...` command); every decision that
depends on the config is a function here. Paths:

    resources/<dataset>/                                   downloads (real datasets)
    results/data/<dataset>/base/                           prepared or generated dataset
    results/data/<dataset>/noise<r>/                       copy with injected noise ratio r
    results/runs/<dataset>/<data>/<backbone>/<method>/seed<k>/   one training run
    results/summary/ results/tables/ results/figures/      aggregates
    results/logs/                                          one log per job
"""

import functools
import os
import shutil
import subprocess
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

min_version("9.0")

# --- config --------------------------------------------------------------------------
# The paper reproduction is the default; `--configfile FILE` replaces it (a `configfile:`
# directive would be *merged* with FILE, mixing the paper's datasets into a demo run).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")

DATASETS = config["datasets"]
METHOD_ARGS = {  # method label -> the (variant, denoise) pair `guider train` receives
    "none": "--variant none --denoise none",
    "paper": "--variant paper --denoise none",
    "no_amsc": "--variant no_amsc --denoise none",
    "no_dbpr": "--variant no_dbpr --denoise none",
    "kl_kd": "--variant kl_kd --denoise none",
    "no_kd": "--variant no_kd --denoise none",
    "as_released": "--variant as_released --denoise none",
    "tce": "--variant none --denoise tce",
    "rce": "--variant none --denoise rce",
}
CONDA_ENV = "../../envs/guider.yaml"  # relative to workflow/rules/; used with --sdm conda
FIGURES = ["comparison", "curves"]  # always drawn; "ablation", "noise", "detection" when the study runs


def _check_subset(section: str, key: str, allowed) -> None:
    unknown = set(config[section][key]) - set(allowed)
    if unknown:
        raise WorkflowError(f"config {section}.{key}: {sorted(unknown)} not among the configured {sorted(allowed)}")


def _check_config() -> None:
    """Cross-references the schema cannot express."""
    _check_subset("ablation", "datasets", DATASETS)
    _check_subset("noise", "datasets", DATASETS)
    for section in ("ablation", "noise"):
        if config[section]["datasets"] and not config[section]["backbones"]:
            raise WorkflowError(f"config {section}: datasets are listed but no backbones")
    if config["noise"]["datasets"] and not [r for r in config["noise"]["ratios"] if r > 0]:
        raise WorkflowError("config noise.ratios: the noise study needs at least one ratio > 0")
    if not {"none", "paper"} <= set(config["variants"]):
        raise WorkflowError("config variants: the main table compares 'paper' with 'none'; list both")


_check_config()


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


# Training and feature jobs request gpu=1. With GPUs, at most one such job per card runs
# at a time (the rest queue) and each claims a free card (guider.gpu_claim); without
# GPUs the resource is left unconstrained and jobs run on CPU. A profile cannot count
# GPUs, so the cap is set here unless `--resources gpu=N` (or a profile) set one.
GPU_COUNT = visible_gpu_count()
if GPU_COUNT and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", GPU_COUNT)
logger.info(
    f"guider: {GPU_COUNT} visible GPU(s); GPU jobs at a time: "
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


def noise_data(ratio: float) -> str:
    """Folder name of a noise level (guider.report.runs.data_name): 0 -> base, 0.2 -> noise0.2."""
    return "base" if ratio == 0 else f"noise{ratio:g}"


@functools.cache
def dataset_registry() -> dict:
    """The real datasets' registry (guider/data/datasets.yaml), read without importing guider."""
    import yaml

    return yaml.safe_load((Path(workflow.basedir) / "guider/data/datasets.yaml").read_text())


def registry_files(dataset: str) -> list[str]:
    """Upstream files `guider data download` writes for `dataset`, minus the skipped parts."""
    registry = dataset_registry()
    if dataset not in registry:
        raise WorkflowError(
            f"config datasets.{dataset}: source 'download' but {dataset!r} is not in the "
            f"dataset registry ({', '.join(registry)})"
        )
    skip = set(DATASETS[dataset]["skip"])
    return [f["name"] for f in registry[dataset]["files"] if f["role"] not in skip]


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


def feature_args(modality: str):
    def args(wildcards) -> str:
        spec = DATASETS[wildcards.dataset]["features"][modality]
        size = spec.get("image_size")
        return f"--encoder {spec['encoder']}" + (f" --image-size {size}" if size else "")

    return args


def base_data_files(dataset: str) -> dict:
    folder = data_dir(dataset, "base")
    return {"meta": f"{folder}/dataset.json", "text": f"{folder}/text_feat.npy", "image": f"{folder}/image_feat.npy"}


def train_data_files(wildcards) -> dict:
    """A noisy copy is written whole (features included) by one job; the base folder by three."""
    if wildcards.data == "base":
        return base_data_files(wildcards.dataset)
    return {"meta": f"{data_dir(wildcards.dataset, wildcards.data)}/dataset.json"}


# --- runs ----------------------------------------------------------------------------
RUN = "results/runs/{dataset}/{data}/{backbone}/{method}/seed{seed}"


def study_runs() -> list[dict]:
    """Every run the config asks for (main study, ablations, noise study), without duplicates."""
    seeds = config["seeds"]
    main = [(d, "base", b, m) for d in DATASETS for b in config["backbones"] for m in config["variants"]]
    abl = config["ablation"]
    ablation = [(d, "base", b, m) for d in abl["datasets"] for b in abl["backbones"] for m in abl["methods"]]
    noise = config["noise"]
    noisy = [
        (d, noise_data(r), b, m)
        for d in noise["datasets"]
        for b in noise["backbones"]
        for m in noise["methods"]
        for r in noise["ratios"]
    ]
    keys = dict.fromkeys(main + ablation + noisy)
    return [dict(dataset=d, data=x, backbone=b, method=m, seed=s) for (d, x, b, m) in keys for s in seeds]


def run_files(name: str) -> list[str]:
    return [f"{RUN.format(**run)}/{name}" for run in study_runs()]


def train_args(wildcards) -> str:
    train = config["train"]
    args = [METHOD_ARGS[wildcards.method], f"--seed {wildcards.seed}", f"--device {train['device']}"]
    args += [f"--{key} {train[key]}" for key in ("epochs", "patience") if train[key] is not None]
    overrides = {**train["overrides"], **train["backbone_overrides"].get(wildcards.backbone, {})}
    args += [f"--set {key}={value}" for key, value in overrides.items()]
    return " ".join(args)


# --- report --------------------------------------------------------------------------
def has_ablation() -> bool:
    """Whether some run on the base data uses a method other than plain and GUIDER."""
    ablation = config["ablation"]
    extra_main = set(config["variants"]) - {"none", "paper"}
    extra_ablation = (
        set(ablation["methods"]) - {"none", "paper"} if ablation["datasets"] and ablation["backbones"] else set()
    )
    return bool(extra_main or extra_ablation)


def has_noise_study() -> bool:
    return bool(config["noise"]["datasets"])


def figure_names() -> list[str]:
    names = list(FIGURES)
    names += ["ablation"] if has_ablation() else []
    names += ["noise"] if has_noise_study() else []
    names += ["detection"] if has_noise_study() and "paper" in config["noise"]["methods"] else []
    return names


def report_targets() -> list[str]:
    targets = [
        "results/summary/runs.csv",
        "results/summary/metrics.json",
        "results/tables/main.md",
        "results/tables/main.tex",
    ]
    if has_ablation():
        targets += ["results/tables/ablation.md", "results/tables/ablation.tex"]
    if has_noise_study():
        targets.append("results/summary/noise_curve.csv")
    targets += [f"results/figures/{name}.{fmt}" for name in figure_names() for fmt in ("png", "pdf")]
    return targets


wildcard_constraints:
    dataset=name_pattern(DATASETS),
    data=r"base|noise[0-9.]+",
    backbone=r"[A-Za-z0-9_]+",
    method=name_pattern(METHOD_ARGS),
    seed=r"[0-9]+",
