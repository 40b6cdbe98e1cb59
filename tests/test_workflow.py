"""The Snakemake workflow: dry runs of the shipped configs (Snakemake's job stats against
guider.study.Study's counts, and the paper config's counted by hand), lint, config
validation, GPU scheduling, the SLURM profile, and one end-to-end run of the tiny test
config (slow).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake_runner import ROOT, snakemake

from guider.data.noise import parse_level
from guider.runs import gpu_claim

CONFIGS = {name: ROOT / "config" / f"{name}.yaml" for name in ("config", "demo", "test", "noise_small", "tuning_small")}


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: {rule: count}."""
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    total = counts.pop("total")
    assert total == sum(counts.values())
    return counts


def study_counts(config) -> dict[str, int]:
    """The jobs a config implies, as guider.study.Study counts them (the one definition)."""
    from guider.study import Study

    if isinstance(config, Path):
        return Study.from_file(config).counts()
    return Study(config).counts()


# --- dry runs ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paper_dry_run() -> str:
    """`snakemake -n -p` with no config argument: the default (paper) config, every shell command."""
    result = snakemake("-n", "-p", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def tiny_dry_run(tmp_path_factory) -> str:
    result = snakemake("-n", "-p", "--configfile", str(CONFIGS["test"]), cwd=tmp_path_factory.mktemp("tiny"))
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_paper_dry_run_job_counts_match_the_config(paper_dry_run):
    assert job_counts(paper_dry_run) == study_counts(CONFIGS["config"])


def test_tiny_dry_run_job_counts_match_the_config(tiny_dry_run):
    assert job_counts(tiny_dry_run) == study_counts(CONFIGS["test"])


def test_noise_study_config_runs_three_kinds_at_three_ratios(tmp_path):
    result = snakemake("-n", "-p", "--configfile", str(CONFIGS["noise_small"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts == study_counts(CONFIGS["noise_small"])
    assert counts["train"] == 3 * 2 * (1 + 3 * 3) * 3 and counts["noisy_copy"] == 9 and counts["figure"] == 6


def test_tuning_config_trains_six_points_per_backbone_and_guiders_twelve(tmp_path):
    result = snakemake("-n", "--configfile", str(CONFIGS["tuning_small"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts == study_counts(CONFIGS["tuning_small"])
    assert (counts["tune_point"], counts["tune_select"], counts["train"]) == (6 + 6 + 12 + 12, 4, 12)


def test_tuning_null_trains_every_run_at_its_configured_point(tmp_path):
    config = yaml.safe_load(CONFIGS["test"].read_text())
    config["tuning"] = None
    path = tmp_path / "untuned.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts == study_counts(config) and "tune_point" not in counts and counts["train"] == 18
    assert "--tuned" not in result.stdout


def test_demo_dry_run_replaces_the_paper_config(tmp_path):
    result = snakemake("-n", "-p", "--configfile", str(CONFIGS["demo"]), cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert job_counts(text) == study_counts(CONFIGS["demo"])
    assert "results/data/synthetic/base" in text and "baby" not in text  # not merged with the paper config


def test_paper_config_counts_by_hand():
    # 4 datasets x 15 backbones x 2 methods x 5 seeds + 2 x (15 x 7 ablations + 3 x DA-MRS) x 5
    # + noise on Baby: (15 backbones x 4 methods + 3 x DA-MRS) x (3 kinds x 3 ratios > 0 + natural) x 5
    counts = study_counts(CONFIGS["config"])
    assert counts["train"] == 600 + 1080 + (15 * 4 + 3) * (3 * 3 + 1) * 5
    assert [counts[f"download_{d}"] for d in ("baby", "sports", "clothing", "microlens")] == [1, 1, 1, 1]
    assert counts["prepare"] == counts["text_features"] == counts["image_features"] == 4
    assert counts["noisy_copy"] == 3 * 3 + 1  # add, delete, modality at 0.1, 0.2, 0.4, and natural
    assert counts["figure"] == 2 + 1 + 3 + 1  # comparison, curves, ablation, noise_add/delete/modality, detection
    # grids capped at 16 points: BPR 7, LightGCN 20 -> 16, VBPR 7, ..., plus GUIDER's 12 on each backbone, 4 datasets
    assert counts["tune_point"] == 4 * (7 + 16 + 7 + 16 + 16 + 16 + 16 + 16 + 8 + 8 + 16 + 3 + 1 + 16 + 1 + 15 * 12)
    assert counts["tune_select"] == 4 * 15 * 2 and counts["tuning_table"] == 1


def test_paper_dry_run_lists_every_stage_and_run(paper_dry_run):
    config = yaml.safe_load(CONFIGS["config"].read_text())
    for rule in (
        "download_baby",
        "prepare",
        "text_features",
        "image_features",
        "noisy_copy",
        "train",
        "collect_runs",
        "main_table",
        "figure",
    ):
        assert f"rule {rule}:" in paper_dry_run
    for dataset, backbone, method, seed in itertools.product(
        config["datasets"], config["backbones"], config["methods"], config["seeds"]
    ):
        assert f"results/runs/{dataset}/base/{backbone}/{method}/seed{seed}/metrics.json" in paper_dry_run
    for data in ("add0.4", "delete0.1", "modality0.2", "natural"):
        assert f"results/runs/baby/{data}/freedom/paper/seed4/metrics.json" in paper_dry_run
    assert "results/runs/baby/delete0.4/bpr/damrs_plugin/seed0/metrics.json" in paper_dry_run
    assert "guider data noise --data results/data/baby/base --kind delete --seed 0 --ratio 0.1 --out" in paper_dry_run
    assert "--kind modality --seed 0 --ratio 0.2 --modality text --out" in paper_dry_run
    assert "--kind natural --seed 0 --max-noisy-rating 2 --eval-min-rating 4 --out results/data/baby/natural" in (
        paper_dry_run
    )
    assert "guider data download baby --resources resources --skip images" in paper_dry_run
    assert "guider features image --data results/data/baby/base --encoder amazon_cnn" in paper_dry_run


def test_train_commands_carry_each_method(paper_dry_run):
    lines = paper_dry_run.splitlines()
    every = [line[line.index("guider train") :] for line in lines if "guider train" in line]
    commands = [c for c in every if "--out results/runs/" in c]
    points = [c for c in every if "--out results/tuning/" in c]
    counts = study_counts(CONFIGS["config"])
    assert len(commands) == counts["train"] == 4830 and len(points) == counts["tune_point"] == len(every) - 4830
    for command in points:
        dataset, backbone, method, point = re.search(
            r"--out results/tuning/(\w+)/(\w+)/(\w+)/point(\d+)", command
        ).groups()
        assert f"--method {method} " in command and "--seed 0 " in command and f"--backbone {backbone}" in command
        inherited = f"--tuned results/tuning/{dataset}/{backbone}/none.json"
        assert (inherited in command) == (method != "none")  # a method's grid sits on plain's chosen point
    for command in commands:
        out = re.search(r"--out (\S+)", command).group(1)
        key = run_key(out)
        record = key.method if key.method == "paper" else "none"  # only GUIDER records a grid of its own
        assert f"--tuned results/tuning/{key.dataset}/{key.backbone}/{record}.json" in command
    for command in commands:
        out = re.search(r"--out (\S+)", command).group(1)
        key = run_key(out)
        assert f"--method {key.method} " in command and "--variant" not in command and "--denoise" not in command
        assert f"--backbone {key.backbone}" in command and f"--seed {key.seed}" in command
        data = re.search(r"--data (\S+)", command).group(1)
        assert data == f"results/data/{key.dataset}/{key.data}"
        assert "--resume" in command and "--device auto" in command


def run_key(folder: str):
    """The study coordinates of a run folder results/runs/<dataset>/<data>/<backbone>/<method>/seed<k>."""
    from types import SimpleNamespace

    dataset, data, backbone, method, seed = Path(folder).parts[-5:]
    parse_level(data)  # a data level the report can read
    return SimpleNamespace(dataset=dataset, data=data, backbone=backbone, method=method, seed=int(seed[4:]))


def test_lint_is_clean():
    result = snakemake("--lint", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_every_trainable_backbone_is_in_the_paper_config():
    from guider.models import available, get_class

    # the package's own backbones (tests may register more from outside)
    trainable = {n for n in available() if get_class(n).trainable and get_class(n).__module__.startswith("guider.")}
    config = yaml.safe_load(CONFIGS["config"].read_text())
    assert trainable <= set(config["backbones"])
    assert trainable <= set(config["ablation"]["backbones"]) and trainable <= set(config["noise"]["backbones"])


def test_config_keys_are_documented():
    readme = (ROOT / "config" / "README.md").read_text()
    from guider.study import config_schema

    schema = config_schema()  # the noise kinds' options included

    def keys(node: dict, prefix: str = "") -> list[str]:
        found = []
        for key, sub in node.get("properties", {}).items():
            found.append(prefix + key)
            sub = schema["definitions"][sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
            found += keys(sub, f"{prefix}{key}.")
        return found

    names = keys(schema) + [f"datasets.<name>.{k}" for k in keys(schema["definitions"]["dataset"])]
    missing = [name for name in names if f"`{name}`" not in readme]
    assert not missing, f"config/README.md does not document {missing}"


# --- validation ----------------------------------------------------------------------
def validate_config(change: dict, tmp_path: Path) -> dict:
    """The tiny config with `change` applied, validated in-process against the workflow's schema
    with the registries' enums filled in (as the workflow does: guider.study.validated)."""
    from guider.study import validated

    config = yaml.safe_load(CONFIGS["test"].read_text())
    config.update(change)
    return validated(config)


def test_schema_fills_defaults(tmp_path):
    config = validate_config({"train": {}, "ablation": {}, "noise": {}, "report": {}, "resources": {}}, tmp_path)
    assert config["train"] == {
        "epochs": None,
        "patience": None,
        "device": "auto",
        "jobs_per_gpu": None,
        "overrides": {},
        "backbone_overrides": {},
        "method_overrides": {},
    }
    assert config["noise"]["ratios"] == [0.0, 0.1, 0.2, 0.3, 0.5] and config["noise"]["methods"] == ["none", "paper"]
    assert config["resources"]["train"] == {"threads": 1, "mem_mb": 4000, "runtime": 60}
    assert config["datasets"]["tiny"]["features"]["text"]["encoder"] == "all-MiniLM-L6-v2"
    assert config["datasets"]["tiny"]["skip"] == [] and config["report"]["alpha"] == 0.05


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbones": []}, "backbones"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"methods": ["none", "gold"]}, "gold"),
        ({"train": {"device": "gpu0"}}, "gpu0"),
        ({"train": {"overrides": {"lr": 0.1}}}, "lr"),
        ({"datasets": {"tiny": {"source": "ftp"}}}, "ftp"),
        ({"report": {"metrics": ["hits@3"]}}, "hits@3"),
        ({"typo": 1}, "typo"),
    ],
)
def test_schema_rejects_bad_values(change, message, tmp_path):
    from guider.study import StudyError

    with pytest.raises(StudyError, match=re.escape(message)):
        validate_config(change, tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ablation": {"datasets": ["nowhere"], "backbones": ["bpr"], "methods": ["tce"]}}, "nowhere"),
        ({"noise": {"datasets": ["tiny"], "backbones": ["bpr"], "ratios": [0.0]}}, "need at least one ratio > 0"),
        ({"noise": {"datasets": ["tiny"], "backbones": ["bpr"], "kinds": []}}, "lists datasets but no noise kinds"),
        (
            {"noise": {"datasets": ["tiny"], "backbones": ["bpr"], "kinds": ["delete"], "ratios": [0.5, 1.0]}},
            "ratios must be < 1",
        ),
        ({"methods": ["paper"]}, "compares 'paper' with 'none'"),
        (
            {
                "tuning": {
                    "backbone_grids": {"bpr": {"train.lr": [0.1]}},
                    "method_grids": {"paper": {"train.lr": [0.2]}},
                }
            },
            "the grid of method paper repeats ['train.lr'] of bpr's grid",
        ),
        ({"tuning": {"backbone_grids": {"bpr": {"model.nope": [1]}}}}, "config tuning: bpr/none grid point"),
    ],
)
def test_workflow_rejects_inconsistent_configs(tmp_path, change, message):
    config = yaml.safe_load(CONFIGS["test"].read_text())
    config.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


# --- GPU scheduling ------------------------------------------------------------------
@pytest.mark.parametrize(
    "visible, extra, expected",
    [
        ("0,1", [], "2 visible GPU(s), 1 job(s) per GPU; GPU jobs at a time: 2"),
        ("0,1,2,3", ["--resources", "gpu=1"], "4 visible GPU(s), 1 job(s) per GPU; GPU jobs at a time: 1"),
        ("-1", [], "0 visible GPU(s), 1 job(s) per GPU; GPU jobs at a time: unlimited (CPU)"),
    ],
)
def test_gpu_cap_follows_the_visible_gpus(tmp_path, visible, extra, expected):
    result = snakemake(
        "-n", "--configfile", str(CONFIGS["test"]), *extra, cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": visible}
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout + result.stderr


def test_training_and_feature_jobs_request_one_gpu(tiny_dry_run):
    blocks = tiny_dry_run.split("\n\n")
    for block in blocks:
        rule = re.search(r"rule (\w+):", block)
        if rule and rule.group(1) in ("train", "text_features", "image_features"):
            assert re.search(r"resources: .*gpu=1", block), block
        elif rule and rule.group(1) in ("collect_runs", "synthetic"):
            assert "gpu=" not in block


def _claim_in_child(lock_dir: str, ids: list[str], ready, release, out) -> None:
    out.put(gpu_claim.claim_gpu(len(ids), lock_dir, ids))
    ready.set()
    release.wait(30)


def test_concurrent_processes_claim_different_gpus(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    release, out = ctx.Event(), ctx.Queue()
    children = []
    for _ in range(3):
        ready = ctx.Event()
        child = ctx.Process(target=_claim_in_child, args=(str(tmp_path), ["3", "7"], ready, release, out))
        child.start()
        assert ready.wait(60)
        children.append(child)
    claims = [out.get(timeout=10) for _ in children]
    assert claims == [0, 1, None]  # two cards, three jobs: the third finds none free
    release.set()
    for child in children:
        child.join(30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-3.lock", "gpu-7.lock"]
    try:  # the locks died with their processes: this process gets the first card, and keeps it
        assert gpu_claim.claim_gpu(2, tmp_path, ["3", "7"]) == 0
        assert gpu_claim.claim_gpu(2, tmp_path, ["3", "7"]) == 0
    finally:
        gpu_claim.release_gpu()


def test_physical_ids_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert gpu_claim.physical_ids(2) == ["2", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_claim.physical_ids(3) == ["0", "1", "2"]


def test_jobs_per_gpu_multiplies_the_gpu_slots(tmp_path):
    config = yaml.safe_load(CONFIGS["test"].read_text())
    config["train"]["jobs_per_gpu"] = 4
    path = tmp_path / "packed.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert result.returncode == 0, result.stderr
    assert "2 visible GPU(s), 4 job(s) per GPU; GPU jobs at a time: 8" in result.stdout + result.stderr


def test_auto_jobs_per_gpu_follows_the_card_memory():
    # nvidia-smi's memory.total of a 24 GB, an 80 GB and a 141 GB card, in GiB
    assert [gpu_claim.auto_jobs_per_gpu(m) for m in (0.0, 23.6, 39.9, 79.6, 140.4, 1000.0)] == [1, 1, 1, 3, 7, 8]


def _claim_slot_in_child(lock_dir: str, ready, release, out) -> None:
    os.environ.update({"GUIDER_JOBS_PER_GPU": "2", "GUIDER_GPU_LOCK_DIR": lock_dir})
    import torch

    from guider.engine.device import resolve_device

    torch.cuda.is_available = lambda: True  # a fake machine with two cards
    torch.cuda.device_count = lambda: 2
    out.put(str(resolve_device("auto")))
    ready.set()
    release.wait(30)


def test_concurrent_processes_fill_every_card_before_a_second_slot(tmp_path):
    """Two slots per card on a faked 2-GPU machine: five concurrent jobs get cards 0, 1, 0, 1,
    and the fifth, finding every slot held, shares card 0."""
    ctx = multiprocessing.get_context("spawn")
    release, out = ctx.Event(), ctx.Queue()
    children = []
    for _ in range(5):
        ready = ctx.Event()
        child = ctx.Process(target=_claim_slot_in_child, args=(str(tmp_path), ready, release, out))
        child.start()
        assert ready.wait(120)
        children.append(child)
    claims = [out.get(timeout=10) for _ in children]
    release.set()
    for child in children:
        child.join(30)
    assert claims == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"gpu-{d}.slot{j}.lock" for d in (0, 1) for j in (0, 1)]


def test_jobs_per_gpu_must_be_a_positive_whole_number(monkeypatch, tmp_path):
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("GUIDER_JOBS_PER_GPU", bad)
        with pytest.raises(ValueError, match="GUIDER_JOBS_PER_GPU"):
            gpu_claim.claim_gpu(2, tmp_path, ["0", "1"])
    monkeypatch.delenv("GUIDER_JOBS_PER_GPU")
    assert gpu_claim.jobs_per_gpu() == 1


# --- SLURM ---------------------------------------------------------------------------
def test_slurm_profile_dry_run(tmp_path):
    profile = ROOT / "workflow" / "profiles" / "slurm"
    result = snakemake("-n", "--profile", str(profile), "--configfile", str(CONFIGS["config"]), cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert job_counts(text)["train"] == 4830
    train = next(block for block in text.split("\n\n") if "rule train:" in block)
    config = yaml.safe_load(CONFIGS["config"].read_text())["resources"]["train"]
    assert f"threads: {config['threads']}" in train
    for resource in (f"mem_mb={config['mem_mb']}", f"runtime={config['runtime']}", "gpu=1", "slurm_partition=gpu"):
        assert resource in train
    gpu_rules = set()
    for block in text.split("\n\n"):
        rule = re.search(r"^rule (\w+):", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and resources and "gpu=1" in resources.group(1):
            gpu_rules.add(rule.group(1))
            assert "slurm_partition=gpu" in resources.group(1), f"rule {rule.group(1)} requests a GPU, no GPU partition"
    assert {"train", "tune_point", "text_features", "image_features"} <= gpu_rules


# --- end to end ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The test config run end to end once (module scope: two tests read it)."""
    work = tmp_path_factory.mktemp("tiny_run")
    result = snakemake("--cores", "2", "--configfile", str(CONFIGS["test"]), cwd=work, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work


@pytest.mark.slow
def test_tiny_config_end_to_end(tiny_run):
    tmp_path, config = tiny_run, str(CONFIGS["test"])
    results = tmp_path / "results"
    for name in ("comparison", "curves", "ablation", "noise_add", "noise_modality", "detection"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (results / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    for name in ("main.md", "main.tex", "ablation.md", "ablation.tex", "main_significance.csv", "robustness.md",
                 "tuning.md", "tuning.tex"):  # fmt: skip
        assert (results / "tables" / name).stat().st_size > 0
    import pandas as pd

    runs = pd.read_csv(results / "summary" / "runs.csv")
    assert len(runs) == study_counts(Path(config))["train"] == 18
    record = json.loads((results / "tuning" / "tiny" / "bpr" / "paper.json").read_text())
    assert len(record["points"]) == 2 and set(record["inherited"]) == {"model.reg_weight"}
    trained = json.loads((results / "runs/tiny/base/bpr/paper/seed1/config.json").read_text())
    assert trained["kd"]["weight"] == record["chosen"]["point"]["kd.weight"]
    assert trained["model"]["reg_weight"] == record["inherited"]["model.reg_weight"]
    assert "Chosen on valid" in (results / "tables" / "tuning.md").read_text()
    assert set(runs["method"]) == {"none", "paper", "tce"} and set(runs["noise_ratio"]) == {0.0, 0.3}
    assert set(runs["data"]) == {"base", "add0.3", "modality0.3"}
    noisy = runs[(runs["noise_ratio"] == 0.3) & (runs["method"] == "paper")]
    assert noisy["detect.noise_kind.precision"].notna().all() and len(noisy) == 4
    assert noisy.loc[noisy["noise_kind"] == "add", "detect.injected_noise.precision"].notna().all()
    again = snakemake("-n", "--configfile", config, cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
    report = snakemake("--report", "results/report.html", "--configfile", config, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (results / "report.html").read_text()
    for caption in (
        "How well AMSC finds each kind of noise",
        "Robustness to added interactions",
        "Robustness to swapped modalities",
        "Model selection on the validation split",
        "The noise study: test",
        "One row per training run",
        "of every backbone, plain (grey)",
    ):
        assert caption in html


@pytest.mark.slow
def test_a_report_made_with_directory_carries_the_stylesheet(tiny_run):
    """From the repository root with --directory (how the verdict's report is made): the default
    profile's stylesheet path must not break when Snakemake changes into the study's folder."""
    stylesheet = (ROOT / "workflow" / "profiles" / "default" / "report.css").read_text()
    config = str(CONFIGS["test"])
    made = snakemake("--report", "results/dir_report.html", "--configfile", config, "--directory", str(tiny_run))
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    html = (tiny_run / "results" / "dir_report.html").read_text()
    assert stylesheet.splitlines()[1].strip() in html  # a line of the stylesheet's comment


BROWSER_TOOLS = ("chromium", "chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in BROWSER_TOOLS) or importlib.util.find_spec("selenium") is None,
    reason="needs Chromium, chromedriver and Selenium (apt-get install chromium chromium-driver; .[browser])",
)
def test_the_report_opens_in_a_browser_with_the_headline_and_every_table(tiny_run, tmp_path):
    report = tiny_run / "results" / "report.html"
    if not report.exists():
        made = snakemake("--report", "results/report.html", "--configfile", str(CONFIGS["test"]), cwd=tiny_run)
        assert made.returncode == 0, made.stderr
    script = [sys.executable, str(ROOT / "scripts" / "report_browser.py")]
    seen = subprocess.run([*script, str(report), "--screenshots", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert "landing page: 'The answer' with a table of 2 comparisons" in seen.stdout
    for table in ("main", "ablation", "baselines", "robustness", "tuning"):
        assert f"table {table}: " in seen.stdout and (tmp_path / f"{table}.png").stat().st_size > 10_000
    bare = tmp_path / "bare.html"  # a page without the headline or tables: named failures, rc 1
    bare.write_text("<html><body><h1>Snakemake Report</h1></body></html>")
    failed = subprocess.run([*script, str(bare)], capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1 and "no 'The answer' section" in failed.stderr
    assert "the report embeds no main.html" in failed.stderr


# --- names and keys checked against the package when the DAG is built ------------------
def dry_run_with(tmp_path: Path, change: dict) -> subprocess.CompletedProcess:
    config = yaml.safe_load(CONFIGS["test"].read_text())
    config.update(change)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config))
    return snakemake("-n", "--configfile", str(path), cwd=tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbones": ["vbrp"]}, "'vbrp' is not one of"),
        ({"train": {"overrides": {"model.reg_weigth": 0.1}}}, "unknown config key model.reg_weigth"),
        ({"train": {"method_overrides": {"paper": {"kd.weight": -1}}}}, "kd.weight must be >= 0, got -1"),
        ({"train": {"overrides": {"kd.weight": 0.2}}}, "unknown config section 'kd' for method 'none'"),
        ({"train": {"backbone_overrides": {"vbpr": {"model.n_layers": 2}}}}, "unknown config key model.n_layers"),
        ({"ablation": {"datasets": ["tiny"], "backbones": ["bpr"], "methods": ["tce2"]}}, "'tce2' is not one of"),
    ],
)
def test_unknown_names_and_keys_fail_the_dry_run(tmp_path, change, message):
    result = dry_run_with(tmp_path, change)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "rule train" not in result.stdout  # refused while the DAG was built, no job listed


def test_the_schema_enums_are_the_registries():
    from guider.data.noise import noise_kinds
    from guider.methods import available_methods
    from guider.models import registered
    from guider.study import SCHEMA_FILE, config_schema

    schema = config_schema()
    assert schema["definitions"]["backbone"]["enum"] == registered()
    assert schema["definitions"]["method"]["enum"] == available_methods()
    assert schema["definitions"]["noise_kind"]["enum"] == noise_kinds()
    assert {"mode", "modality", "max_noisy_rating", "eval_min_rating"} <= set(
        schema["properties"]["noise"]["properties"]
    )
    raw = yaml.safe_load(SCHEMA_FILE.read_text())
    assert raw["definitions"]["method"]["enum"] == [] and raw["definitions"]["backbone"]["enum"] == []
    assert raw["definitions"]["noise_kind"]["enum"] == [] and "mode" not in raw["properties"]["noise"]["properties"]


def test_the_removed_variants_key_names_its_replacement(tmp_path):
    config = yaml.safe_load(CONFIGS["test"].read_text())
    config["variants"] = config.pop("methods")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "config key 'variants' was renamed 'methods'" in result.stdout + result.stderr


def mmrec_config(tmp_path: Path, features: bool) -> Path:
    """A config whose only dataset is an MMRec folder (3 columns; with or without features)."""
    import numpy as np
    from conftest import make_dataset

    folder = tmp_path / "sports"
    folder.mkdir()
    ds = make_dataset()
    ds.inter[["userID", "itemID", "x_label"]].to_csv(folder / "sports.inter", sep="\t", index=False)
    if features:
        np.save(folder / "text_feat.npy", ds.text_feat)
        np.save(folder / "image_feat.npy", ds.image_feat)
    config = yaml.safe_load(CONFIGS["test"].read_text())
    config["datasets"] = {"sports": {"source": "mmrec", "path": str(folder)}}
    config["backbones"] = ["bpr", "lightgcn", "vbpr"]
    config["ablation"] = {"datasets": ["sports"], "backbones": ["lightgcn"], "methods": ["no_amsc", "tce"]}
    config["noise"] = {"datasets": [], "backbones": []}
    path = tmp_path / "mmrec.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_id_only_mmrec_folder_trains_the_id_runs_and_says_what_it_skips(tmp_path):
    result = snakemake("-n", "-p", "--configfile", str(mmrec_config(tmp_path, features=False)), cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    counts = job_counts(text)
    assert counts["import_mmrec"] == 1 and "text_features" not in counts and "synthetic" not in counts
    runs = sorted(set(re.findall(r"results/runs/sports/base/(\w+)/(\w+)/seed\d/metrics.json", text)))
    assert runs == [("bpr", "none"), ("lightgcn", "no_amsc"), ("lightgcn", "none"), ("lightgcn", "tce")]
    assert counts["train"] == 4 * 2
    assert "dataset sports: skipping the runs that cannot train on it: 4 (backbone, method) pairs" in text
    assert "`guider plan` lists them" in text
    assert max(len(line) for line in text.splitlines() if line.startswith("guider:")) < 400
    from guider.study import Study

    (tmp_path / "again").mkdir()
    full = " ".join(Study.from_file(mmrec_config(tmp_path / "again", features=False)).skipped_lines(short=False))
    assert "vbpr/none (backbone vbpr needs item features)" in full
    assert "paper on 2 backbones: bpr, lightgcn (method paper needs item features)" in full  # grouped by method
    assert f"guider data import --format mmrec {tmp_path / 'sports'} --out results/data/sports/base" in text.replace(
        "'", ""
    )


def test_an_mmrec_folder_with_features_trains_everything(tmp_path):
    result = snakemake("-n", "--configfile", str(mmrec_config(tmp_path, features=True)), cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert job_counts(text)["train"] == (3 * 2 + 2) * 2 and "skipping the runs" not in text
