"""MMRec folder round trip, validation errors, LATTICE import."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset

from guider.cli import main as cli
from guider.data import DatasetError, load_dataset, save_dataset


def test_round_trip(tmp_path):
    ds = make_dataset()
    folder = save_dataset(ds, tmp_path / "d")
    back = load_dataset(folder)
    assert (back.n_users, back.n_items, back.name) == (ds.n_users, ds.n_items, "tiny")
    pd.testing.assert_frame_equal(back.inter, ds.inter)
    np.testing.assert_array_equal(back.text_feat, ds.text_feat)
    np.testing.assert_array_equal(back.image_feat, ds.image_feat)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["statistics"]["interactions"] == len(ds.inter)


def test_mmrec_folder_without_metadata_loads(tmp_path):
    ds = make_dataset(features=False)
    folder = tmp_path / "baby"
    folder.mkdir()
    ds.inter.to_csv(folder / "baby.inter", sep="\t", index=False)
    (folder / "i_id_mapping.csv").write_text("asin\titemID\n")
    back = load_dataset(folder)
    assert back.name == "baby" and back.text_feat is None and back.n_items == ds.n_items


def _write(tmp_path, inter, **feats):
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    inter.to_csv(folder / "bad.inter", sep="\t", index=False)
    for name, arr in feats.items():
        np.save(folder / f"{name}.npy", arr)
    return folder


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda df: df.assign(itemID=df["itemID"] + (df["itemID"] == df["itemID"].max()) * 5), "itemID not contiguous"),
        (lambda df: df.assign(userID=df["userID"] - 1), "negative userID"),
        (lambda df: df[df["x_label"] != 1], "missing split 'valid'"),
        (lambda df: df.assign(x_label=df["x_label"].where(df.index != 0, 7)), "x_label values [7]"),
        (lambda df: df.drop(columns=["x_label"]), "missing column(s) ['x_label']"),
    ],
)
def test_validation_errors_name_file_and_problem(tmp_path, mutate, message):
    folder = _write(tmp_path, mutate(make_dataset(features=False).inter))
    with pytest.raises(DatasetError) as err:
        load_dataset(folder)
    assert message in str(err.value) and "bad.inter" in str(err.value)


def test_feature_rows_and_nan(tmp_path):
    ds = make_dataset(features=False)
    folder = _write(tmp_path, ds.inter, text_feat=np.zeros((ds.n_items - 1, 4), np.float32))
    with pytest.raises(DatasetError, match=r"text_feat.npy: 39 feature rows but the dataset has 40 items"):
        load_dataset(folder)
    bad = np.zeros((ds.n_items, 4), np.float32)
    bad[3, 1] = np.nan
    folder = _write(tmp_path, ds.inter, text_feat=bad)
    with pytest.raises(DatasetError, match=r"1 NaN/inf values in 1 item rows \(first: \[3\]\)"):
        load_dataset(folder)


def test_cold_eval_users_are_dropped_with_count(tmp_path):
    ds = make_dataset(features=False)
    inter = ds.inter.copy()
    cold_user = ds.n_users  # a new user with only a test row
    inter.loc[len(inter)] = [cold_user, 0, 5, 1, 2]
    back = load_dataset(_write(tmp_path, inter))
    assert back.meta["dropped_cold_eval_rows"] == 1
    assert cold_user not in set(back.inter["userID"])


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    ds = make_dataset()
    target = tmp_path / "d"
    save_dataset(ds, target)
    before = sorted(p.name for p in target.iterdir())
    monkeypatch.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_dataset(ds, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp folder left behind


def test_lattice_import(tmp_path):
    src = tmp_path / "lat"
    src.mkdir()
    (src / "train.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 3], "2": [1]}))
    (src / "val.json").write_text(json.dumps({"0": [3], "1": [0], "2": [4]}))
    (src / "test.json").write_text(json.dumps({"0": [4], "1": [1], "2": [0]}))
    (src / "item2id.json").write_text(json.dumps({f"asin{i}": i for i in range(5)}))
    assert cli(["data", "import", "--format", "lattice", str(src), "--out", str(tmp_path / "out")]) == 0
    ds = load_dataset(tmp_path / "out")
    assert (ds.n_users, ds.n_items) == (3, 5)
    assert ds.statistics()["train"] == 6 and ds.statistics()["valid"] == 3 and ds.statistics()["test"] == 3
    assert sorted(zip(*ds.split(0))) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (2, 1)]


def test_lattice_import_errors(tmp_path):
    src = tmp_path / "lat"
    src.mkdir()
    (src / "train.json").write_text(json.dumps({"0": [0, "x"]}))
    (src / "val.json").write_text("{}")
    with pytest.raises(DatasetError, match="train.json: user '0' must map to a list of integer"):
        from guider.data.sources.lattice import read_lattice

        read_lattice(src)
