"""The workflow on a real SLURM cluster (issue 12): `snakemake --profile workflow/profiles/slurm`
end to end, every non-local job an sbatch job, outputs identical to a local run, and a training
job killed with `scancel` resubmitted (the profile's `retries`) and resumed from its checkpoint.

These tests need the throw-away single-node cluster of scripts/slurm_cluster.sh (munge,
MariaDB, slurmdbd, slurmctld, slurmd on 127.0.0.1 in a private network namespace): run them
with `make test-slurm`, which CI (.ci/run) calls after `make test`. Anywhere else they skip,
so they can never submit jobs to a real site's cluster.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from snakemake_runner import ROOT, snakemake, snakemake_command, snakemake_env

PROFILE = ROOT / "workflow" / "profiles" / "slurm"
TEST_CONFIG = ROOT / "config" / "test.yaml"
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "2")  # the plugin waits 40 s by default

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not os.environ.get("GUIDER_SLURM_STATE") or not os.environ.get("SLURM_CONF"),
        reason="needs the throw-away cluster of scripts/slurm_cluster.sh: run `make test-slurm`",
    ),
]


def on_slurm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return snakemake("--profile", str(PROFILE), *FAST_STATUS, *args, cwd=cwd, timeout=1500)


def accounting(since: str) -> list[dict]:
    """sacct's allocations submitted since `since`: JobID, Comment (rule_<rule>_wildcards_...), State."""
    out = subprocess.run(
        [
            "sacct",
            "--allusers",
            "--allocations",
            "--noheader",
            "--parsable2",
            "--starttime",
            since,
            "--format=JobID,Comment,State",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [dict(zip(("job", "comment", "state"), line.split("|"))) for line in out.splitlines() if line]
    return [row | {"rule": row["comment"].removeprefix("rule_").split("_wildcards_")[0]} for row in rows]


def wait_for_accounting(since: str, count: int, timeout: float = 60) -> list[dict]:
    """slurmdbd records jobs asynchronously: wait until `count` allocations are finished there."""
    deadline = time.monotonic() + timeout
    while True:
        rows = accounting(since)
        finished = [r for r in rows if r["state"] not in ("PENDING", "RUNNING")]
        if len(finished) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def remote_rules(log: str) -> Counter:
    """Jobs Snakemake ran through the executor ('rule X:' blocks; 'localrule X:' ran in place)."""
    return Counter(line.split()[1].rstrip(":") for line in log.splitlines() if line.startswith("rule "))


def now() -> str:
    """sacct's --starttime, one second early so a job submitted this second counts."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))


def without_timings(value):
    """A JSON value with every wall-clock field dropped (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def json_outputs(results: Path) -> dict[str, object]:
    files = sorted(results.glob("runs/**/metrics.json")) + sorted(results.glob("tuning/**/*.json"))
    return {str(f.relative_to(results)): without_timings(json.loads(f.read_text())) for f in files}


def test_the_tiny_config_runs_as_sbatch_jobs_with_the_outputs_of_a_local_run(tmp_path):
    cluster, local = tmp_path / "slurm", tmp_path / "local"
    cluster.mkdir(), local.mkdir()
    since = now()
    result = on_slurm("--configfile", str(TEST_CONFIG), cwd=cluster)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    submitted = remote_rules(log)
    assert submitted["train"] == 18 and submitted["tune_point"] == 4  # 18 table runs, a 2 + 2 point grid
    assert {"text_features", "image_features"} <= set(submitted)
    rows = wait_for_accounting(since, sum(submitted.values()))
    assert Counter(r["rule"] for r in rows) == submitted, rows
    assert {r["state"] for r in rows} == {"COMPLETED"}, rows
    assert log.count("has been submitted with SLURM jobid") == len(rows)

    reference = snakemake("--cores", "2", "--configfile", str(TEST_CONFIG), cwd=local, timeout=1500)
    assert reference.returncode == 0, reference.stderr[-4000:]
    outputs, expected = json_outputs(cluster / "results"), json_outputs(local / "results")
    assert sum(name.startswith("runs/") for name in outputs) == 18  # the table runs
    assert len(outputs) == 18 + 14  # + 2 tuning records and 12 files of the 4 grid points
    assert outputs == expected
    for name in ("data/tiny/base/text_feat.npy", "data/tiny/base/image_feat.npy", "tables/main.md",
                 "tables/tuning.md", "tables/robustness.md"):  # fmt: skip
        assert (cluster / "results" / name).read_bytes() == (local / "results" / name).read_bytes(), name


RUN = "results/runs/big/base/bpr/none/seed0"
EPOCHS = 150


def long_training_config(tmp_path: Path) -> Path:
    """One BPR training long enough to be cancelled in the middle (about 35 s on 2 cores)."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    dataset = config["datasets"].pop("tiny")
    dataset["synthetic"] |= {"users": 1500, "items": 2000}
    config |= {
        "datasets": {"big": dataset},
        "backbones": ["bpr"],
        "methods": ["none", "paper"],  # the tables need both; only the plain run is built
        "seeds": [0],
        "train": {"epochs": EPOCHS, "patience": EPOCHS, "device": "cpu"},
        "tuning": None,
        "ablation": {"datasets": [], "backbones": [], "methods": []},
        "noise": {"datasets": [], "backbones": [], "methods": [], "kinds": [], "ratios": []},
    }
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, "snakemake ended before the training wrote a checkpoint"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.2)


def running_train_job() -> str:
    """The SLURM job id of the running train job, from squeue (slurmctld's own view, no lag)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "--noheader", "--states=RUNNING", "--format=%i|%k"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        running = [job for job, comment in (line.split("|", 1) for line in queue.split()) if "rule_train" in comment]
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no running train job in squeue")


def test_a_cancelled_training_job_is_resubmitted_and_resumes_from_its_checkpoint(tmp_path):
    config = long_training_config(tmp_path)
    cluster, local = tmp_path / "slurm", tmp_path / "local"
    cluster.mkdir(), local.mkdir()
    since = now()
    command = snakemake_command(
        f"{RUN}/metrics.json", "--profile", str(PROFILE), *FAST_STATUS, "--configfile", str(config)
    )
    with open(tmp_path / "snakemake.log", "w") as out:
        process = subprocess.Popen(
            command, cwd=cluster, env=snakemake_env(), stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_for(cluster / RUN / "checkpoint.pt", process)
            victim = running_train_job()
            subprocess.run(["scancel", victim], check=True)
            assert process.wait(timeout=900) == 0, (tmp_path / "snakemake.log").read_text()[-4000:]
        finally:
            if process.poll() is None:
                process.kill()
    log = (tmp_path / "snakemake.log").read_text()
    trains = [r for r in wait_for_accounting(since, 2) if r["rule"] == "train"]
    assert [r["state"].split()[0] for r in trains] == ["CANCELLED", "COMPLETED"], trains  # "CANCELLED by <uid>"
    assert trains[0]["job"] == victim and "Trying to restart job" in log
    train_log = (cluster / "results/logs/train/big/base/bpr/none/seed0.log").read_text()
    resumed = re.search(r"resumed \S+ at epoch (\d+)", train_log)
    assert resumed, train_log[-2000:]
    resumed_at = int(resumed.group(1))
    assert 0 < resumed_at < EPOCHS  # it went on from the middle, not from scratch

    reference = snakemake(f"{RUN}/metrics.json", "--cores", "1", "--configfile", str(config), cwd=local, timeout=1500)
    assert reference.returncode == 0, reference.stderr[-4000:]
    metrics = [without_timings(json.loads((root / RUN / "metrics.json").read_text())) for root in (cluster, local)]
    assert metrics[0] == metrics[1] and metrics[0]["epochs_run"] == EPOCHS
