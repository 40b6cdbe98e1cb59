"""No config value reaches a shell unquoted, and no workflow job wedges after a kill.

- Hostile strings in every string-valued key of a workflow config are refused when the study
  is built, naming the key; the ones that may hold such characters (an MMRec folder's path, the
  report's note) travel quoted and arrive intact in a real run; no marker file ever appears.
- A training job killed at any moment (mid-epoch, after its last checkpoint, during the final
  evaluation, during GUIDER's finalize) completes when Snakemake runs again, with the metrics of
  an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_dataset
from snakemake_runner import BIN, ROOT, snakemake

from guider.study import Study, StudyError

INJECTIONS = ["$(touch {marker})", "`touch {marker}`", "x; touch {marker}", "a b", 'it\'s "q"', "x\ntouch {marker}"]


def tiny_config(**changes) -> dict:
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(changes)
    return config


@pytest.mark.parametrize("template", INJECTIONS)
@pytest.mark.parametrize(
    "key",
    [
        "datasets.tiny.mirror",
        "datasets.tiny.features.text.encoder",
        "datasets.tiny.features.image.encoder",
        "train.device",
        "train.overrides.train.lr",
        "report.metrics",
        "plugins",
        "datasets.<name>",
    ],
)
def test_hostile_values_are_refused_when_the_study_is_built_naming_the_key(tmp_path, key, template):
    value = template.format(marker=tmp_path / "PWNED")
    config = tiny_config()
    if key == "datasets.<name>":
        config["datasets"] = {value: config["datasets"]["tiny"]}
    elif key == "train.overrides.train.lr":
        config["train"]["overrides"] = {"train.lr": value}
    elif key in ("report.metrics", "plugins"):
        section, _, name = key.partition(".")
        if name:
            config.setdefault(section, {})[name] = [value]
        else:
            config[section] = [value]
    else:
        node = config
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    with pytest.raises((StudyError, ValueError)) as refused:
        Study(config)
    message = str(refused.value)
    assert message.startswith("config") and key.split(".")[0] in message, message
    assert not (tmp_path / "PWNED").exists()


def test_a_dry_run_refuses_an_injected_mirror_naming_the_key(tmp_path):
    config = tiny_config(
        datasets={"baby": {"source": "download", "mirror": f"http://127.0.0.1:9$(touch {tmp_path}/P)"}}
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "config datasets.baby.mirror" in result.stdout + result.stderr
    assert not (tmp_path / "P").exists()


def hostile_folder(root: Path) -> Path:
    """An MMRec folder whose path holds every shell metacharacter but braces (and `<` `>`
    around no lowercase name: Snakemake's path variables)."""
    folder = root / 'sp ace\'s "q" $(touch MARKER) `touch MARKER`; touch MARKER & x|y <Z> a>b<c'
    folder.mkdir(parents=True)
    ds = make_dataset()
    ds.inter[["userID", "itemID", "x_label"]].to_csv(folder / "mm.inter", sep="\t", index=False)
    np.save(folder / "text_feat.npy", ds.text_feat)
    np.save(folder / "image_feat.npy", ds.image_feat)
    return folder


@pytest.mark.slow
def test_hostile_strings_that_are_allowed_arrive_intact_and_run_nothing(tmp_path):
    folder = hostile_folder(tmp_path / "in")
    note = "Note: $(touch MARKER) `touch MARKER`; 'quoted' \"double\" & | < > done"
    config = tiny_config(
        datasets={"mm": {"source": "mmrec", "path": str(folder)}},
        backbones=["bpr"],
        methods=["none", "paper"],
        seeds=[0],
        tuning=None,
        ablation={},
        noise={},
        report={"metrics": ["recall@20"], "note": note},
        train={"epochs": 1, "patience": 1, "device": "cpu"},
    )
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake("--cores", "2", "--configfile", str(path), cwd=work, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not [p for p in tmp_path.rglob("MARKER")] and not (ROOT / "MARKER").exists()
    assert note in (work / "results" / "tables" / "main.md").read_text()  # the note arrived intact
    imported = json.loads((work / "results/data/mm/base/dataset.json").read_text())
    assert imported["name"] == "mm" and imported["source"]["path"] == str(folder)


# --- a job killed at any moment completes on the next run ------------------------------
SHIM = """#!{python}
import os, signal, sys
phase, marker = os.environ.get("GUIDER_KILL_AT"), os.environ.get("GUIDER_KILL_MARKER")
if phase and sys.argv[1:2] == ["train"] and not os.path.exists(marker):
    from guider.engine import trainer as T

    def die():
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)

    if phase == "mid-epoch":
        step, calls = T.Trainer._step, []
        def _step(self, batch, epoch, index):
            calls.append(1)
            if epoch == 1 and index == 0:  # the second epoch's first batch (tiny: one batch per epoch)
                die()
            return step(self, batch, epoch, index)
        T.Trainer._step = _step
    elif phase == "after-last-checkpoint":
        T.Trainer.finish = lambda self: die()
    elif phase == "final-evaluation":
        finish, evaluate = T.Trainer.finish, T.Trainer.evaluate_model
        def evaluate_model(self, split):
            if getattr(self, "_finishing", False) and split == "test":
                die()
            return evaluate(self, split)
        def finish_(self):
            self._finishing = True
            return finish(self)
        T.Trainer.evaluate_model, T.Trainer.finish = evaluate_model, finish_
    elif phase == "finalize":
        from guider.methods.guider import GuiderObjective
        GuiderObjective.finalize = lambda self, run_dir, evaluate: die()
from guider.cli import main
sys.exit(main())
"""

RUN = "results/runs/tiny/base/bpr/paper/seed0"


def run_one_training(work: Path, config: Path, env: dict | None = None):
    return snakemake(f"{RUN}/metrics.json", "--cores", "1", "--configfile", str(config), cwd=work, env=env, timeout=900)


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    shim_dir = root / "shim"
    shim_dir.mkdir()
    shim = shim_dir / "guider"
    shim.write_text(SHIM.format(python=sys.executable))
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tuning=None, train={"epochs": 3, "patience": 3, "device": "cpu"})))
    reference = root / "reference"
    reference.mkdir()
    result = run_one_training(reference, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return shim_dir, config, json.loads((reference / RUN / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["mid-epoch", "after-last-checkpoint", "final-evaluation", "finalize"])
def test_a_training_killed_at_any_phase_completes_on_the_next_run(kill_setup, tmp_path, phase):
    shim_dir, config, reference = kill_setup
    source = config.parent / "reference"
    shutil.copytree(source / "results" / "data", tmp_path / "results" / "data")  # the prepared data, mtimes kept
    shutil.copytree(source / ".snakemake" / "metadata", tmp_path / ".snakemake" / "metadata")
    marker = tmp_path / "killed"
    env = {
        "PATH": f"{shim_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GUIDER_KILL_AT": phase,
        "GUIDER_KILL_MARKER": str(marker),
    }
    first = run_one_training(tmp_path, config, env)
    assert marker.exists() and first.returncode != 0  # the job was killed
    again = run_one_training(tmp_path, config, env)  # the marker makes the shim let it run
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    metrics = json.loads((tmp_path / RUN / "metrics.json").read_text())
    assert metrics["test"] == reference["test"] and metrics["valid"] == reference["valid"]
    assert metrics["best_epoch"] == reference["best_epoch"] and metrics["epochs_run"] == reference["epochs_run"]
    log = (tmp_path / RUN / "log.csv").read_text().splitlines()
    assert len(log) == 1 + reference["epochs_run"]
    assert (tmp_path / RUN / "denoise.json").exists() and (tmp_path / RUN / "teacher_metrics.json").exists()
