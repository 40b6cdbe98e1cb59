"""Glue of the workflow: load the config into the study, GPU scheduling, thin input functions.

The study itself (which runs exist, their folders, each job's arguments, the report's targets)
is `guider.study.Study`: plain Python, unit-tested without Snakemake, also read by `guider plan`.
Rules stay declarative (inputs, outputs, one `guider ...` command); each rule asks STUDY for
its arguments as a list and quotes every value it passes (`{params.args:q}`).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version

min_version("9.0")

try:  # the package (installed, or this checkout)
    import guider  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(workflow.basedir)))
from guider.runs.gpu_claim import JOBS_PER_GPU_ENV, auto_jobs_per_gpu
from guider.data.noise import level_pattern
from guider.study import Study, StudyError, name_pattern

# --- config --------------------------------------------------------------------------
# The paper reproduction is the default; `--configfile FILE` replaces it (a `configfile:`
# directive would be *merged* with FILE, mixing the paper's datasets into a demo run).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


try:
    STUDY = Study(config)
except (StudyError, ValueError) as err:
    raise WorkflowError(str(err)) from None
config.update(STUDY.config)  # the defaults filled in, for the report's templates (snakemake.config)
for _line in STUDY.skipped_lines():
    logger.info(f"guider: {_line}")
DATASETS = STUDY.datasets
CONDA_ENV = "../../envs/guider.yaml"  # relative to workflow/rules/; used with --sdm conda


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
    per 20 GiB of the smallest card (1 below 40 GiB, at most 8; guider.runs.gpu_claim.auto_jobs_per_gpu)."""
    chosen = STUDY.train["jobs_per_gpu"]
    return chosen if chosen is not None else auto_jobs_per_gpu(min(gpu_memory_gib(), default=0.0))


# Training and feature jobs request gpu=1: one slot. With GPUs, the `gpu` resource holds
# visible GPUs x jobs_per_gpu slots, so at most that many such jobs run at a time (the
# rest queue), and each job claims a free slot on some card (guider.runs.gpu_claim, told the
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
    return STUDY.config["resources"][group]


# --- input functions: each asks the study ----------------------------------------------
def noise_level_pattern() -> str:
    """The data folders of noisy copies (every registered kind's level names, not base)."""
    return level_pattern(with_base=False)


def folder_of(path: str) -> str:
    return os.path.dirname(path)


def run_of(wildcards):
    """The study run a `train` job trains."""
    return STUDY.run(wildcards.dataset, wildcards.data, wildcards.backbone, wildcards.method, wildcards.seed)


def point_of(wildcards):
    """The tuning grid point a `tune_point` job trains."""
    return STUDY.tuning_point(wildcards.dataset, wildcards.backbone, wildcards.method, wildcards.point)


def tuning_inputs(wildcards) -> dict:
    """Plain training's record, for a method's grid points and its record."""
    if wildcards.method == "none":
        return {}
    return {"inherit": STUDY.tuning_record(wildcards.dataset, wildcards.backbone, "none")}


def tuning_point_metrics(wildcards) -> list[str]:
    return [f"{f}/metrics.json" for f in STUDY.tuning_runs(wildcards.dataset, wildcards.backbone, wildcards.method)]


def run_files(name: str) -> list[str]:
    return [f"{run.folder}/{name}" for run in STUDY.study_runs()]


def figure_inputs(wildcards) -> dict:
    inputs = {"runs": "results/summary/runs.csv"}
    if wildcards.figure == "curves":
        inputs["curves"] = "results/summary/training_curves.csv"
    return inputs


wildcard_constraints:
    **STUDY.wildcard_constraints(),
