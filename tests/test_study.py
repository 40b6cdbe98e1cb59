"""guider.study without Snakemake: the runs a config defines, their folders and arguments, the
report's targets, the jobs per rule, and the checks a schema cannot make."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake_runner import ROOT

from guider.study import Study, StudyError, validated

TEST = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def study(**changes) -> Study:
    config = copy.deepcopy(TEST)
    config.update(changes)
    return Study(config)


def test_the_runs_of_the_test_config_by_hand():
    s = study()
    runs = s.study_runs()
    # 2 backbones x 2 methods x 2 seeds + bpr/tce x 2 seeds + bpr x 2 methods x 2 noisy copies x 2 seeds
    assert len(runs) == 8 + 2 + 8 == 18
    assert {r.data for r in runs} == {"base", "add0.3", "modality0.3"}
    points = [r for r in s.runs() if r.is_tuning]
    assert len(points) == 2 + 2  # BPR's reg_weight grid, then GUIDER's kd.weight grid on top
    assert s.counts()["train"] == 18 and s.counts()["tune_point"] == 4 and s.counts()["noisy_copy"] == 2


def test_a_run_knows_its_folder_inputs_and_arguments():
    s = study()
    run = s.run("tiny", "add0.3", "bpr", "paper", 1)
    assert run.folder == "results/runs/tiny/add0.3/bpr/paper/seed1"
    assert run.inputs() == {
        "meta": "results/data/tiny/add0.3/dataset.json",
        "tuned": "results/tuning/tiny/bpr/paper.json",
    }
    args = run.train_args()
    assert args[:6] == ["--method", "paper", "--seed", "1", "--device", "cpu"]
    assert ["--epochs", "2"] == args[6:8] and args[-2:] == ["--tuned", "results/tuning/tiny/bpr/paper.json"]
    point = s.tuning_point("tiny", "bpr", "paper", 1)
    assert point.folder == "results/tuning/tiny/bpr/paper/point1"
    assert "--tuned" in point.train_args() and point.train_args()[-2:] == ["--set", "kd.weight=0.2"]
    assert all(isinstance(a, str) for a in args)  # an argument list: the rules quote each one


def test_noise_and_data_arguments_come_from_the_kinds_and_the_config():
    s = study()
    assert s.noise_args("modality0.3") == ["--kind", "modality", "--seed", "0", "--ratio", "0.3", "--modality", "text"]
    assert s.noise_args("add0.3")[-2:] == ["--mode", "popular"]
    assert s.synthetic_args("tiny")[:2] == ["--name", "tiny"]
    noisy = study(
        datasets={
            "tiny": {
                **TEST["datasets"]["tiny"],
                "synthetic": {**TEST["datasets"]["tiny"]["synthetic"], "noise_ratio": 0.2},
            }
        }
    )  # noqa: E501
    assert "--noise-ratio" in noisy.synthetic_args("tiny")


def test_the_report_targets_follow_the_studies():
    targets = study().targets()
    assert "results/report/headline.rst" in targets and "results/tables/main.html" in targets
    assert "results/tables/tuning.md" in targets and "results/figures/noise_modality.png" in targets
    plain = study(ablation={}, noise={}, tuning=None).targets()
    assert "results/tables/ablation.md" not in plain and "results/tables/robustness.md" not in plain
    assert "results/summary/noise_curve.csv" in plain  # every study writes it (DVC versions it)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tuning": {"datasets": ["nowhere"]}}, "config tuning.datasets: ['nowhere'] not among"),
        (
            {"noise": {"datasets": ["tiny"], "backbones": ["bpr"], "kinds": ["delete"], "ratios": [1.0]}},
            "ratios must be < 1",
        ),  # noqa: E501
        ({"train": {"device": "cpu\n"}}, "config.train.device: 'cpu\\n' holds a control character"),
        ({"variants": ["none", "paper"]}, "call it 'methods'"),
        ({"methods": ["paper"]}, "compares 'paper' with 'none'"),
        ({"plugins": ["a b"]}, "config plugins: plug-in 'a b': not a Python module name"),
        (
            {"datasets": {"mm": {"source": "mmrec", "path": "/data/x<results>y"}}},
            "config datasets.mm.path: '<results>' reads as a Snakemake path variable",
        ),
    ],
)
def test_what_a_schema_cannot_say_is_checked_naming_the_key(changes, message):
    with pytest.raises(StudyError) as refused:
        study(**changes)
    assert message in str(refused.value)


def test_validation_fills_defaults_on_a_copy():
    config = copy.deepcopy(TEST)
    filled = validated(config)
    assert "noise" in filled and filled["noise"]["seed"] == 0 and filled["noise"]["mode"] == "popular"
    assert config == TEST  # the caller's dict untouched


def test_the_wildcard_constraints_match_exactly_the_names():
    import re

    constraints = study().wildcard_constraints()
    assert re.fullmatch(constraints["dataset"], "tiny") and not re.fullmatch(constraints["dataset"], "tinyx")
    for level in ("base", "add0.3", "delete0.1", "modality1", "natural"):
        assert re.fullmatch(constraints["data"], level), level
    assert not re.fullmatch(constraints["data"], "noise0.2")


def test_left_out_runs_are_grouped_by_method_and_by_datasets_that_skip_the_same():
    from guider.study import Study, _skipped_by_method

    why = "method damrs_plugin plugs into bpr; got '{}'"
    skipped = {("mmgcn", "damrs_plugin"): why.format("mmgcn"), ("damrs", "damrs_plugin"): why.format("damrs"),
               ("vbpr", "paper"): "backbone vbpr needs item features"}  # fmt: skip
    text = _skipped_by_method(skipped)
    assert text == (f"damrs_plugin on 2 backbones: mmgcn, damrs (for mmgcn: {why.format('mmgcn')}); "
                    "vbpr/paper (backbone vbpr needs item features)")  # fmt: skip
    study = Study.__new__(Study)
    study.skipped = {"baby": dict(skipped), "sports": dict(skipped), "clothing": {("vbpr", "paper"): "x"}}
    lines = study.skipped_lines(short=False)
    assert len(lines) == 2 and lines[0].startswith("datasets baby, sports: ")
    assert lines[1].startswith("dataset clothing: ")
    assert all(line.startswith("dataset ") for line in study.skipped_lines())  # the workflow's: one per dataset


def test_a_backbones_own_epochs_and_minimum_replace_the_config_wide_ones(tmp_path):
    train = {**TEST["train"], "backbone_overrides": {"bpr": {"train.epochs": 7, "train.min_epochs": 5}}}
    s = study(train=train)
    args = s.run("tiny", "base", "bpr", "none", 0).train_args()
    assert "--epochs" not in args and ["--set", "train.epochs=7"] == args[args.index("train.epochs=7") - 1 :][:2]
    assert "train.min_epochs=5" in args
    other = s.run("tiny", "base", "lightgcn", "none", 0).train_args()
    assert ["--epochs", "2"] == other[6:8] and "train.epochs=7" not in other  # the others' commands unchanged
    from guider.config.run import resolve_run_config

    sets = [args[i + 1] for i, token in enumerate(args) if token == "--set"]
    assert resolve_run_config("bpr", sets=sets).train.epochs == 7  # what guider train will run
