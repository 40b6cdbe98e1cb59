"""Datasets that are hostile or suspicious: names that are paths, image paths that leave the
folder, dataset.json of the wrong shape, duplicate / overlapping rows, features training
cannot use; and what MMRec accepts (three columns, no features) loads here too."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset

from guider.cli import main as cli
from guider.data import DatasetError, load_dataset, save_dataset
from guider.data.sources.lattice import read_lattice
from guider.data.sources.prepared import read_content


def mmrec_folder(path, inter: pd.DataFrame, **features):
    """A folder in MMRec's layout: <name>.inter and optional feature files, no dataset.json."""
    path.mkdir(parents=True)
    inter.to_csv(path / f"{path.name}.inter", sep="\t", index=False)
    for name, array in features.items():
        np.save(path / f"{name}.npy", array)
    return path


def three_columns(ds=None) -> pd.DataFrame:
    ds = ds or make_dataset(features=False)
    return ds.inter[["userID", "itemID", "x_label"]]


# --- names and paths ------------------------------------------------------------------
@pytest.mark.parametrize("bad_name", ["../../escaped", "ABSOLUTE", "sub/dir", "..", ".hidden"])
def test_a_dataset_name_cannot_write_outside_out(tmp_path, bad_name):
    bad_name = str(tmp_path / "abs-escaped") if bad_name == "ABSOLUTE" else bad_name
    src = save_dataset(make_dataset(), tmp_path / "src")
    meta = json.loads((src / "dataset.json").read_text())
    (src / "dataset.json").write_text(json.dumps({**meta, "name": bad_name}))
    out = tmp_path / "area" / "out"
    before = {p for p in tmp_path.rglob("*")}
    assert cli(["data", "import", "--format", "mmrec", str(src), "--out", str(out)]) == 2
    assert cli(["data", "noise", "--data", str(src), "--ratio", "0.1", "--out", str(out)]) == 2
    assert {p for p in tmp_path.rglob("*")} == before  # nothing written anywhere (the absolute name included)
    with pytest.raises(DatasetError, match="is not a safe file name"):
        load_dataset(src)


def test_save_refuses_an_unsafe_name_and_import_checks_name(tmp_path):
    ds = make_dataset()
    ds.name = "../x"
    with pytest.raises(DatasetError, match=r"dataset name '../x' is not a safe file name"):
        save_dataset(ds, tmp_path / "d")
    assert not (tmp_path / "x.inter").exists() and not (tmp_path / "d").exists()
    src = save_dataset(make_dataset(), tmp_path / "src")
    assert cli(["data", "import", "--format", "mmrec", str(src), "--out", str(tmp_path / "o"), "--name", "a/b"]) == 2


def content_folder(tmp_path, image: str):
    folder = tmp_path / "ds"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "0.png").write_bytes(b"x")
    pd.DataFrame({"itemID": [0, 1], "text": ["a", "b"], "image": ["images/0.png", image]}).to_csv(
        folder / "item_content.csv", index=False
    )
    return folder


@pytest.mark.parametrize("image", ["../outside.png", "/etc/hostname", "images/../../outside.png", "link/x.png"])
def test_image_paths_must_stay_inside_the_dataset_folder(tmp_path, image):
    folder = content_folder(tmp_path, image)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", folder / "link")  # a symlink out of the folder is refused too
    with pytest.raises(ValueError, match=r"item_content.csv: item 1: image path .* leaves the dataset folder"):
        read_content(folder)


def test_relative_image_paths_inside_the_folder_are_fine(tmp_path):
    assert read_content(content_folder(tmp_path, "images/1.png"))["image"].tolist() == ["images/0.png", "images/1.png"]


# --- dataset.json ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "meta, message",
    [
        ([1, 2], "must hold a JSON object"),
        ({"statistics": [3]}, "key 'statistics' must be an object"),
        ({"statistics": {"users": "many"}}, "statistics.users must be a positive integer"),
        ({"name": 7}, "key 'name' must be a string"),
        ({"n_items": 2.5}, "key 'n_items' must be an integer"),
    ],
)
def test_dataset_json_of_the_wrong_shape_is_one_clear_error(tmp_path, meta, message, caplog):
    folder = save_dataset(make_dataset(), tmp_path / "d")
    (folder / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=message):
        load_dataset(folder)
    assert cli(["data", "export", str(folder), "--out", str(tmp_path / "x")]) == 2
    assert "dataset.json" in caplog.text and "Traceback" not in caplog.text


# --- suspicious rows ------------------------------------------------------------------
def test_duplicate_train_rows_and_split_overlap_are_counted_in_warnings(tmp_path, caplog):
    inter = make_dataset(features=False).inter
    train = inter[inter.x_label == 0]
    test = inter[inter.x_label == 2]
    leak = test.head(3).assign(x_label=0)  # three test pairs also in train
    dup = train.head(2)  # two train rows listed twice
    folder = mmrec_folder(tmp_path / "sus", pd.concat([inter, leak, dup], ignore_index=True))
    with caplog.at_level(logging.WARNING):
        load_dataset(folder)
    assert "sus.inter: 2 duplicate train rows" in caplog.text
    assert "sus.inter: 3 (user, item) pairs are in both train and test" in caplog.text
    assert "both train and valid" not in caplog.text


def test_clean_data_loads_without_warnings(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        load_dataset(save_dataset(make_dataset(), tmp_path / "d"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((40, 3), dtype=np.complex64), "must be real numbers"),
        (np.ones((40, 0), dtype=np.float32), "0 columns"),
        (np.full((40, 3), 1e300), "overflow float32"),
        (np.ones((40, 3), dtype=bool), "must be real numbers"),
    ],
)
def test_features_training_cannot_use_are_refused(tmp_path, array, message):
    folder = mmrec_folder(tmp_path / "f", three_columns(), text_feat=array)
    with pytest.raises(DatasetError, match=rf"text_feat.npy: .*{message}"):
        load_dataset(folder)


def test_float64_features_within_float32_range_load_as_float32(tmp_path):
    folder = mmrec_folder(tmp_path / "f", three_columns(), image_feat=np.random.default_rng(0).normal(size=(40, 5)))
    assert load_dataset(folder).image_feat.dtype == np.float32


# --- LATTICE --------------------------------------------------------------------------
def lattice(tmp_path, train, val=None, test=None):
    src = tmp_path / "lat"
    src.mkdir()
    for name, split in (("train", train), ("val", val or {"0": [1]}), ("test", test or {"0": [2]})):
        (src / f"{name}.json").write_text(json.dumps(split))
    return src


@pytest.mark.parametrize(
    "train, val, message",
    [
        ({"0": [0, True]}, None, "must map to a list of integer item indices"),
        ({"0": [0, 1.0]}, None, "must map to a list of integer item indices"),
        ({"1.5": [0]}, None, "user key '1.5' is not an integer index"),
        ({"0": [0]}, {"0": []}, "the valid split holds no interaction"),
        ({}, None, "the train split holds no interaction"),
    ],
)
def test_lattice_rejects_bool_or_float_ids_and_empty_splits(tmp_path, train, val, message):
    src = lattice(tmp_path, train, val)
    with pytest.raises(DatasetError, match=message):
        read_lattice(src)
    assert cli(["data", "import", "--format", "lattice", str(src), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


# --- what MMRec accepts ---------------------------------------------------------------
def test_mmrec_three_column_folder_imports_trains_and_takes_noise(tmp_path, capsys):
    """MMRec's loader reads userID itemID x_label only, as MMRec's shared-drive folders ship it."""
    src = mmrec_folder(tmp_path / "sports", three_columns())
    out = tmp_path / "imported"
    assert cli(["data", "import", "--format", "mmrec", str(src), "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert list(ds.inter.columns) == ["userID", "itemID", "x_label"] and ds.text_feat is None and not ds.has_features
    assert ds.name == "sports" and (out / "sports.inter").exists()
    assert cli(["data", "noise", "--data", str(out), "--ratio", "0.2", "--out", str(tmp_path / "noisy")]) == 0
    noisy = load_dataset(tmp_path / "noisy")
    assert list(noisy.inter.columns) == ["userID", "itemID", "x_label", "is_noise"]
    assert noisy.inter["is_noise"].sum() == round(0.2 * len(ds.split(0)[0]))
    run = ["train", "--data", str(tmp_path / "noisy"), "--backbone", "lightgcn", "--out", str(tmp_path / "r")]
    assert cli([*run, "--epochs", "1", "--no-progress", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{tmp_path / 'r'}: best epoch 1 of 1; test recall@20 ")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["dataset"] == "sports"
    assert cli([*run[:4], "vbpr", "--out", str(tmp_path / "v"), "--epochs", "1", "--no-progress"]) == 2  # ID-only


def test_mmrec_folder_with_its_feature_files_loads_them(tmp_path):
    text = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    ds = load_dataset(mmrec_folder(tmp_path / "baby", three_columns(), text_feat=text))
    assert np.array_equal(ds.text_feat, text) and ds.image_feat is None
