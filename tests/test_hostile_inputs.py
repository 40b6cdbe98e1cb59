"""Every value a user or a file controls is checked: a bad one gives exit code 2 and one line
naming the file or key (never a traceback), a doubtful one a warning that says what happened,
and nothing silently wrong. The cases of the hostile-but-fair probe (issue 25, items 7-10)."""

from __future__ import annotations

import json
import logging
import os
import stat

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset

from guider.cli import main as cli
from guider.data import save_dataset


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def one_error(caplog, *parts: str) -> str:
    """The single error line of a failed command, holding every one of `parts`."""
    found = errors(caplog)
    assert len(found) == 1, found
    line = found[0]
    assert "\n" not in line and "Traceback" not in line
    for part in parts:
        assert part in line, line
    return line


@pytest.fixture
def data(tmp_path):
    return save_dataset(make_dataset(), tmp_path / "data")


@pytest.fixture
def run(data, tmp_path):
    out = tmp_path / "run"
    assert (
        cli(["train", "--data", str(data), "--backbone", "bpr", "--out", str(out), "--epochs", "1", "--no-progress"])
        == 0
    )
    return out


def train(data, out, *extra) -> int:
    return cli(["train", "--data", str(data), "--backbone", "bpr", "--out", str(out), "--no-progress", *extra])


# --- dataset folders -----------------------------------------------------------------------
def test_an_npz_archive_named_text_feat_npy_is_refused(data, tmp_path, caplog):
    np.savez(data / "text_feat.npy", a=np.zeros((3, 2)))
    os.replace(data / "text_feat.npy.npz", data / "text_feat.npy")
    assert train(data, tmp_path / "r") == 2
    one_error(caplog, "text_feat.npy", "a .npz archive, not a .npy array")


def test_statistics_null_in_dataset_json_is_read_as_absent(data, tmp_path):
    meta = json.loads((data / "dataset.json").read_text())
    meta["statistics"] = None
    (data / "dataset.json").write_text(json.dumps(meta))
    assert train(data, tmp_path / "r", "--epochs", "1") == 0


def test_a_declared_count_that_disagrees_names_the_key(data, tmp_path, caplog):
    meta = json.loads((data / "dataset.json").read_text())
    meta["statistics"]["users"] = 31
    (data / "dataset.json").write_text(json.dumps(meta))
    assert train(data, tmp_path / "r") == 2
    one_error(caplog, "tiny.inter", "dataset.json's statistics.users declares 31")


def test_a_header_only_inter_file_says_it_has_no_rows(data, tmp_path, caplog):
    (data / "tiny.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n")
    assert train(data, tmp_path / "r") == 2
    one_error(caplog, "tiny.inter", "a header but no rows")


def test_a_garbage_line_is_named_by_its_line_number(data, tmp_path, caplog):
    lines = (data / "tiny.inter").read_text().splitlines()
    lines[5] = "7\tnot-an-item\t5\t1000\t0"
    (data / "tiny.inter").write_text("\n".join(lines) + "\n")
    assert train(data, tmp_path / "r") == 2
    one_error(caplog, "tiny.inter", "column itemID", "line 6 holds 'not-an-item'")


def test_an_empty_train_split_is_named_as_such(data, tmp_path, caplog):
    inter = pd.read_csv(data / "tiny.inter", sep="\t")
    inter = inter[inter["x_label"] != 0]
    inter.to_csv(data / "tiny.inter", sep="\t", index=False)
    assert train(data, tmp_path / "r") == 2
    one_error(caplog, "tiny.inter", "missing split 'train'")


def test_dataset_folders_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = save_dataset(make_dataset(), tmp_path / "d")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755
        assert stat.S_IMODE((folder / "tiny.inter").stat().st_mode) == 0o644
        assert cli(["data", "noise", "--data", str(folder), "--ratio", "0.1", "--out", str(tmp_path / "n")]) == 0
        assert stat.S_IMODE((tmp_path / "n").stat().st_mode) == 0o755
    finally:
        os.umask(previous)


# --- noise -------------------------------------------------------------------------------------
def test_natural_noise_on_ratings_that_are_all_equal_is_refused(tmp_path, caplog):
    ds = make_dataset()
    ds.inter["rating"] = 1  # a LATTICE or MMRec import: every rating is 1
    folder = save_dataset(ds, tmp_path / "lattice")
    assert cli(["data", "noise", "--data", str(folder), "--kind", "natural", "--out", str(tmp_path / "n")]) == 2
    one_error(caplog, "every train row", "is rated 1", "carry no information")
    assert not (tmp_path / "n").exists()


def test_an_eval_threshold_that_removes_every_test_row_is_refused(tmp_path, caplog):
    ds = make_dataset()
    ds.inter.loc[ds.inter.index % 3 == 0, "rating"] = 1
    folder = save_dataset(ds, tmp_path / "d")
    args = ["data", "noise", "--data", str(folder), "--kind", "natural", "--eval-min-rating", "6"]
    assert cli([*args, "--out", str(tmp_path / "n")]) == 2
    one_error(caplog, "--eval-min-rating 6 removes every valid row")


def test_an_empty_text_everywhere_is_warned_about(caplog):
    from unittest import mock

    from guider.features import text

    class Model:
        def encode(self, texts, **kwargs):
            return np.zeros((len(texts), 3))

    with mock.patch.object(text, "load_text_model", return_value=Model()), caplog.at_level(logging.WARNING):
        text.encode_texts(["", " ", None])
    assert "every one of the 3 item texts is empty" in caplog.text


def test_an_image_over_the_pixel_limit_is_imputed_not_fatal(tmp_path, caplog):
    from PIL import Image

    from guider.features import image

    small = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), "red").save(small)
    huge = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(huge)  # 200 megapixels: above PIL's 178 MP limit
    assert image._open_image(huge, 1) is None
    assert "bomb.png" in caplog.text and "mean feature" in caplog.text
    assert image._open_image(small, 0) is not None


# --- tuning ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "grid, message",
    [
        ('{"model.reg_weight": 5}', "model.reg_weight: the values must be a list"),
        ('{"model.reg_weight": "abc"}', "model.reg_weight: the values must be a list"),
        ('{"reg_weight": [1]}', "key 'reg_weight' is not section.key"),
        ('{"model.reg_wieght": [0.1]}', "unknown config key model.reg_wieght"),
        ('{"model.reg_weight": [null]}', "None is not a finite number"),
        ("[1, 2]", "must map section.key to a list"),
        ("{not json", "not valid JSON"),
    ],
)
def test_tune_points_refuses_a_bad_grid_in_one_line(grid, message, caplog, capsys):
    try:
        code = cli(["tune", "points", "--backbone", "bpr", "--grid", grid])
    except SystemExit as exit:  # argparse refuses the argument itself
        code = exit.code
    assert code == 2
    if errors(caplog):
        one_error(caplog, message)
    else:  # argparse's own one-line usage error (the JSON itself is malformed)
        assert message in capsys.readouterr().err


def test_tune_points_draws_from_a_huge_grid_without_building_it(capsys):
    grid = json.dumps({f"model.k{i}": list(range(30)) for i in range(8)})  # 30^8 = 6.6e11 points
    from guider import tuning

    points = tuning.grid_points(json.loads(grid), max_points=2, subset_seed=0)
    assert len(points) == 2 and all(len(p) == 8 for p in points)
    with pytest.raises(ValueError, match="set max_points"):
        tuning.grid_points(json.loads(grid))


def test_a_grid_subset_is_the_one_the_full_product_gives():
    import itertools

    from guider import tuning

    grid = {"a.x": [1, 2, 3], "b.y": ["p", "q"], "c.z": [0.1, 0.2, 0.3, 0.4]}
    full = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    assert tuning.grid_points(grid) == full
    kept = np.sort(np.random.default_rng(3).choice(24, 5, replace=False))
    assert tuning.grid_points(grid, 5, 3) == [full[i] for i in kept]


def point_run(folder, valid, test=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": {"reg_weight": 0.1}}))
    metrics = {"valid": valid, "test": test if test is not None else valid}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def select(tmp_path, *runs):
    grid = json.dumps({"model.reg_weight": [0.1] * len(runs)})
    args = ["tune", "select", "--backbone", "bpr", "--grid", grid, "--out", str(tmp_path / "r.json")]
    return cli([*args, "--runs", *map(str, runs)])


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({}, "no 'valid' metrics"),
        ({"recall@20": "high"}, "valid.recall@20 is 'high', not a number"),
        ({"recall@20": 1e308}, "valid.recall@20 is 1e+308; ranking metrics lie in [0, 1]"),
    ],
)
def test_tune_select_refuses_metrics_that_are_not_metrics(tmp_path, metrics, message, caplog):
    run = point_run(tmp_path / "p0", metrics, {"recall@20": 0.1})
    assert select(tmp_path, run) == 2
    one_error(caplog, "metrics.json", message)


def test_tune_select_says_when_a_point_has_no_finite_metric(tmp_path, caplog):
    a = point_run(tmp_path / "p0", {"recall@20": float("nan")})
    b = point_run(tmp_path / "p1", {"recall@20": 0.1})
    with caplog.at_level(logging.WARNING):
        assert select(tmp_path, a, b) == 0
    assert "grid points [0] have a NaN selection metric" in caplog.text


def test_train_refuses_a_tuning_record_of_another_backbone(data, tmp_path, caplog):
    record = tmp_path / "lightgcn.json"
    record.write_text(json.dumps({"backbone": "lightgcn", "method": "none", "chosen": {"settings": {}}}))
    assert train(data, tmp_path / "r", "--tuned", str(record)) == 2
    one_error(caplog, str(record), "a tuning record of backbone 'lightgcn', not 'bpr'")


# --- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0.001\n", " 0.001", "0.001 "])
def test_a_number_with_surrounding_whitespace_is_refused(value):
    from guider.config import TrainConfig
    from guider.config.sections import ConfigError

    with pytest.raises(ConfigError, match="train.lr must be a number"):
        TrainConfig.build({"lr": value}, "train")


def test_plan_refuses_a_cost_that_is_not_a_number(tmp_path, caplog):
    costs = tmp_path / "costs.csv"
    costs.write_text("backbone,method,device,seconds_per_epoch,seconds_per_eval\nbpr,none,cpu,fast,0.1\n")
    from guider import plan

    with pytest.raises(ValueError, match="line 2: seconds_per_epoch is 'fast'"):
        plan.read_costs(costs)
    costs.write_text("backbone,method,device,seconds_per_epoch,seconds_per_eval\nbpr,none,cpu,-1,0.1\n")
    with pytest.raises(ValueError, match="costs are finite seconds >= 0"):
        plan.read_costs(costs)
