"""DVC: the pipeline definition (one stage, the config named in params.yaml), and a full round
trip (slow): run the tiny config through `dvc repro`, push to a temporary remote, clone, pull,
run the documented post-pull step (scripts/after_pull.sh), and check that the pulled files are
byte-identical, that Snakemake finds nothing to redo and that `dvc status` is clean.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.prefix) / "bin"
PROJECT_FILES = [
    "Snakefile",
    "workflow",
    "config",
    "profiles",
    "envs",
    "guider",
    "dvc.yaml",
    "params.yaml",
    "scripts",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".gitignore",
    "pyproject.toml",
]


def stage() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["workflow"]


def out_paths(definition: dict) -> dict[str, dict]:
    """{path: options} of a stage's outs and metrics."""
    entries = {}
    for entry in definition.get("outs", []) + definition.get("metrics", []):
        path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        entries[path] = options or {}
    return entries


# --- the pipeline definition ---------------------------------------------------------
def test_the_stage_runs_the_config_params_yaml_names_and_keeps_its_state():
    definition = stage()
    assert definition["cmd"] == "scripts/dvc_workflow.sh ${workflow.configfile}"
    assert "${workflow.configfile}" in definition["deps"] and definition["params"] == ["workflow.configfile"]
    script = (ROOT / "scripts" / "dvc_workflow.sh").read_text()
    assert 'snakemake --cores all --configfile "$config"' in script and "--report results/report.html" in script
    outs = out_paths(definition)
    for persistent in ("resources", "results/data", "results/runs", "results/tuning", "results/logs"):
        assert outs[persistent].get("persist") is True, persistent
    assert outs["results/summary/metrics.json"] == {"cache": False}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["workflow"]["configfile"] == "config/demo.yaml"  # the committed dvc.lock's run


def test_the_committed_lock_is_the_demos_and_records_every_output():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]["workflow"]
    assert lock["cmd"] == "scripts/dvc_workflow.sh config/demo.yaml"
    assert lock["params"]["params.yaml"] == {"workflow.configfile": "config/demo.yaml"}
    recorded = {entry["path"]: entry for entry in lock["outs"]}
    assert set(recorded) == set(out_paths(stage())), "dvc.lock is not the current dvc.yaml's: rerun dvc repro"
    assert recorded["results/runs"]["nfiles"] > 100 and recorded["results/summary/metrics.json"]["size"] > 0
    metrics = yaml.safe_load((ROOT / "results" / "summary" / "metrics.json").read_text())  # committed (cache: false)
    assert metrics["n_runs"] > 0


@pytest.mark.parametrize("name", ["config", "demo", "test"])
def test_outs_cover_every_workflow_output_of_each_config(name):
    outs = list(out_paths(stage()))
    listing = run(str(BIN / "snakemake"), "-n", "-F", "--configfile", f"config/{name}.yaml", cwd=ROOT)
    produced = {line.split("output: ", 1)[1] for line in listing.splitlines() if line.strip().startswith("output: ")}
    files = {f.strip() for line in produced for f in line.split(",")}
    assert len(files) > 20
    uncovered = [f for f in files if not any(f == o or f.startswith(o.rstrip("/") + "/") for o in outs)]
    assert not uncovered, f"workflow outputs DVC does not version: {sorted(uncovered)[:5]}"


def test_plots_and_default_remote():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    noise_figures = {f"results/figures/noise_{k}.png" for k in config["noise"]["kinds"] if k != "natural"}
    assert noise_figures | {"results/figures/curves.png", "results/figures/detection.png"} <= set(plots)
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".dvc" / "config")
    remote = cfg["core"]["remote"]
    url = cfg[f"'remote \"{remote}\"'"]["url"]
    assert not url.startswith(("s3:", "http", "gs:", "azure:"))  # works out of the box: a local directory
    assert cfg["core"]["analytics"] == "false"


# --- round trip ----------------------------------------------------------------------
def run(*args: str, cwd: Path, timeout: int = 1500) -> str:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in PROJECT_FILES:
        src, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink() or src.is_file():
            shutil.copy2(src, target, follow_symlinks=False)
        else:
            shutil.copytree(src, target, symlinks=True, ignore=ignore)


def tiny_pipeline(repo: Path) -> dict:
    """The project's dvc.yaml and scripts, the stage pointed at the tiny config (params.yaml)."""
    (repo / "params.yaml").write_text(yaml.safe_dump({"workflow": {"configfile": "config/test.yaml"}}))
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["workflow"]


def file_digests(root: Path, paths) -> dict[str, str]:
    digests = {}
    for path in paths:
        target = root / path
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        for file in files:
            if file.name == "checkpoint.pt" or ".cache" in file.parts:  # .dvcignore'd
                continue
            digests[str(file.relative_to(root))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


@pytest.mark.slow
def test_push_clone_pull_is_byte_identical_and_up_to_date(tmp_path):
    repo, clone, remote = tmp_path / "repo", tmp_path / "clone", tmp_path / "remote"
    copy_project(repo)
    definition = tiny_pipeline(repo)
    run("git", "init", "-q", "-b", "main", cwd=repo)
    run(str(BIN / "dvc"), "remote", "modify", "local", "url", str(remote), cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "project", cwd=repo)

    run(str(BIN / "dvc"), "repro", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "results", cwd=repo)
    assert "Everything is up to date" in run(str(BIN / "dvc"), "push", cwd=repo) or remote.exists()
    assert (repo / "dvc.lock").exists() and "results/summary/metrics.json" in run("git", "ls-files", cwd=repo)

    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "results" / "runs").exists()
    run(str(BIN / "dvc"), "pull", cwd=clone)

    outs = list(out_paths(definition))
    original, pulled = file_digests(repo, outs), file_digests(clone, outs)
    assert len(original) > 100 and pulled == original
    assert "up to date" in run(str(BIN / "dvc"), "status", cwd=clone)

    run("scripts/after_pull.sh", cwd=clone)  # the documented post-pull step, for params.yaml's config
    assert "Nothing to be done" in run(str(BIN / "snakemake"), "-n", "--configfile", "config/test.yaml", cwd=clone)
    assert file_digests(clone, outs) == original  # touching changed no byte
    assert "up to date" in run(str(BIN / "dvc"), "status", cwd=clone)


def test_pull_without_a_reachable_remote_fails_and_restores_nothing(tmp_path):
    repo = tmp_path / "repo"
    copy_project(repo)
    run("git", "init", "-q", "-b", "main", cwd=repo)
    run(str(BIN / "dvc"), "remote", "modify", "local", "url", str(tmp_path / "no-remote"), cwd=repo)
    lock = {"schema": "2.0", "stages": {"workflow": {"cmd": "x", "outs": [
        {"path": "results/runs", "hash": "md5", "md5": "0" * 32 + ".dir", "size": 1, "nfiles": 1}]}}}  # fmt: skip
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([str(BIN / "dvc"), "pull"], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert not (repo / "results" / "runs").exists()  # nothing half-restored
