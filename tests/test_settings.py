"""Typed config sections: coercion, bounds and cross-field checks, each error naming its key,
all checked before a run does any work."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import make_dataset

from guider.cli import main as cli
from guider.config import TrainConfig, parse_set, rebuild_run_config, resolve_run_config
from guider.config.sections import ConfigError, Section, deep_merge, setting
from guider.data import save_dataset


@dataclass(frozen=True)
class Demo(Section):
    count: int = setting(3, ge=1)
    rate: float = setting(0.5, gt=0, lt=1)
    mode: str = setting("a", choices=("a", "b"))
    flag: bool = setting(True)
    sizes: list[int] = setting([1, 2], ge=0)
    limit: int | None = setting(None, ge=0)


def test_build_coerces_what_yaml_gives():
    built = Demo.build({"count": 4.0, "rate": "1e-1", "sizes": [3], "limit": 7}, "demo")
    assert (built.count, built.rate, built.sizes, built.limit) == (4, 0.1, [3], 7)
    assert isinstance(built.count, int) and isinstance(built.rate, float)
    assert Demo.build(None, "demo") == Demo() and Demo().sizes is not Demo().sizes  # list defaults not shared


@pytest.mark.parametrize(
    "values, message",
    [
        ({"count": 0}, "demo.count must be >= 1, got 0"),
        ({"count": 2.5}, "demo.count must be an integer, got 2.5"),
        ({"count": True}, "demo.count must be an integer, got True"),
        ({"rate": 1.0}, "demo.rate must be < 1, got 1.0"),
        ({"rate": "fast"}, "demo.rate must be a number, got 'fast'"),
        ({"rate": float("nan")}, "demo.rate must be a finite number"),
        ({"mode": "c"}, "demo.mode must be one of a, b, got 'c'"),
        ({"flag": "yes"}, "demo.flag must be true or false, got 'yes'"),
        ({"sizes": 3}, "demo.sizes must be a list, got 3"),
        ({"sizes": [1, -1]}, "demo.sizes entries must be >= 0"),
        ({"limit": -1}, "demo.limit must be >= 0, got -1"),
        ({"colour": 1}, "unknown config key demo.colour; known: count, rate, mode, flag, sizes, limit"),
    ],
)
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ConfigError) as err:
        Demo.build(values, "demo")
    assert message in str(err.value)


def test_a_section_that_is_not_a_mapping_is_an_error():
    with pytest.raises(ConfigError, match="config section demo must be a mapping"):
        Demo.build(3, "demo")


def test_train_cross_field_checks():
    with pytest.raises(ConfigError, match=r"train.valid_metric 'recall@15' is not computed: 15 is not in train.ks"):
        TrainConfig.build({"valid_metric": "recall@15"}, "train")
    with pytest.raises(ConfigError, match=r"train.valid_metric must look like recall@20"):
        TrainConfig.build({"valid_metric": "hits@20"}, "train")
    with pytest.raises(ConfigError, match=r"train.ks must list at least one cut-off"):
        TrainConfig.build({"ks": []}, "train")
    with pytest.raises(ConfigError, match=r"train.min_epochs \(50\) exceeds train.epochs \(10\)"):
        TrainConfig.build({"epochs": 10, "min_epochs": 50}, "train")


def test_parse_set_and_deep_merge():
    assert parse_set(["teacher.model.n_layers=3", "kd.weight=1e-2", "kd.loss=kl"]) == {
        "teacher": {"model": {"n_layers": 3}},
        "kd": {"weight": "1e-2", "loss": "kl"},
    }
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}, {"d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}
    with pytest.raises(ConfigError, match="--set key 'lr' must be section.name"):
        parse_set(["lr=1"])


def test_a_resolved_config_round_trips_through_its_dict():
    config = resolve_run_config("lightgcn", method="paper", seed=3, sets=["teacher.model.n_layers=3", "kd.weight=0.2"])
    bound = config.with_data("tiny", "abc123")
    assert rebuild_run_config(bound.to_dict()) == bound


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_dataset(make_dataset(), tmp_path_factory.mktemp("d") / "tiny")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "train.batch_size=-5"], "train.batch_size must be >= 1, got -5"),
        (["--set", "train.batch_size=0"], "train.batch_size must be >= 1, got 0"),
        (["--epochs", "-3"], "train.epochs must be >= 1, got -3"),
        (["--set", "model.embedding_size=0"], "model.embedding_size must be >= 1, got 0"),
        (["--set", "train.eval_every=0"], "train.eval_every must be >= 1, got 0"),
        (["--set", "train.valid_metric=ndcg@15"], "train.valid_metric 'ndcg@15' is not computed"),
        (["--set", "train.lr=fast"], "train.lr must be a number, got 'fast'"),
        (["--set", "model.n_layers=2.5"], "model.n_layers must be an integer, got 2.5"),
        (["--method", "paper", "--set", "kd.loss=wasserstein"], "kd.loss must be one of ot, kl"),
        (["--method", "paper", "--set", "teacher.lr=0"], "teacher.lr must be > 0, got 0"),
        (["--method", "tce", "--set", "tce.max_rate=1"], "tce.max_rate must be < 1, got 1"),
        (["--method", "gold"], "unknown method 'gold'; available: none, paper"),
        (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_settings_fail_before_any_work_naming_the_key(folder, tmp_path, caplog, args, message):
    out = tmp_path / "run"
    code = cli(["train", "--data", str(folder), "--backbone", "lightgcn", "--out", str(out), "--no-progress", *args])
    assert code == 2
    assert message in caplog.text and "Traceback" not in caplog.text
    assert not out.exists()  # nothing was started
