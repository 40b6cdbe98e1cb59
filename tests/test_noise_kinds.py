"""The four noise kinds of the robustness study (guider.data.noise, `guider data noise`) on a
hand-made dataset whose counts and labels are worked out by hand below."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from guider.cli import main
from guider.data import Dataset, load_dataset, save_dataset
from guider.data.noise import delete_interactions, label_natural, make_noisy_copy
from guider.methods.reporting import detection_report

# user, item, rating, x_label (0 train, 1 valid, 2 test). 9 train rows; train ratings <= 2:
# (0,1) r1, (0,2) r2, (2,3) r2. Eval rows rated < 4: (0,4) r2 test, (2,0) r1 valid, (3,1) r3 valid.
# Pairs that are positives nowhere: (1,3), (1,4), (3,2) only.
ROWS = [
    (0, 0, 5, 0), (0, 1, 1, 0), (0, 2, 2, 0), (0, 3, 4, 1), (0, 4, 2, 2),
    (1, 1, 4, 0), (1, 0, 5, 1), (1, 2, 5, 2),
    (2, 2, 3, 0), (2, 3, 2, 0), (2, 4, 5, 0), (2, 0, 1, 1), (2, 1, 4, 2),
    (3, 0, 4, 0), (3, 4, 4, 0), (3, 1, 3, 1), (3, 3, 5, 2),
]  # fmt: skip


def tiny(with_rating=True) -> Dataset:
    inter = pd.DataFrame(ROWS, columns=["userID", "itemID", "rating", "x_label"])
    inter["rating"] = inter["rating"].astype(float)
    if not with_rating:
        inter = inter.drop(columns="rating")
    text = np.arange(5, dtype=np.float32)[:, None] * [1.0, 2.0]
    image = 100 + np.arange(5, dtype=np.float32)[:, None] * [1.0, -1.0, 3.0]
    return Dataset("tiny", 4, 5, inter, text.astype(np.float32), image.astype(np.float32), meta={"source": "test"})


def eval_rows(ds: Dataset) -> pd.DataFrame:
    rows = ds.inter[ds.inter["x_label"] != 0]
    return rows[["userID", "itemID", "rating", "x_label"]].reset_index(drop=True)


def train_pairs(ds: Dataset) -> set[tuple[int, int]]:
    users, items = ds.split(0)
    return set(zip(users.tolist(), items.tolist()))


def test_add_fills_exactly_the_three_free_pairs_and_labels_them():
    ds = tiny()
    out, extra = make_noisy_copy(ds, "add", ratio=0.3, seed=5)  # round(0.3 * 9) = 3 pairs: all the free ones
    assert extra == {}
    new = out.inter.iloc[len(ds.inter) :]
    assert set(zip(new["userID"], new["itemID"])) == {(1, 3), (1, 4), (3, 2)}
    assert (new["is_noise"] == 1).all() and (new["x_label"] == 0).all()
    assert out.train_noise_labels.sum() == 3 and len(out.train_noise_labels) == 12
    assert out.meta["noise"] == {"kind": "add", "ratio": 0.3, "mode": "popular", "seed": 5, "n_noise": 3}
    pd.testing.assert_frame_equal(eval_rows(out), eval_rows(ds))
    with pytest.raises(ValueError, match="only 3 non-positive pairs"):
        make_noisy_copy(ds, "add", ratio=0.5, seed=5)  # round(4.5) = 4 > 3


def test_delete_keeps_one_train_row_per_user():
    ds = tiny()
    out, deleted = delete_interactions(ds, 0.5, seed=1)  # round(4.5) = 4 of the 5 deletable rows
    assert len(deleted) == 4 and out.meta["noise"] == {"kind": "delete", "ratio": 0.5, "seed": 1, "n_deleted": 4}
    kept = train_pairs(out)
    assert len(kept) == 5 and kept | set(zip(deleted["userID"], deleted["itemID"])) == train_pairs(ds)
    assert (1, 1) in kept  # user 1's only train row is never deleted
    assert sorted(set(out.split(0)[0].tolist())) == [0, 1, 2, 3]
    assert (deleted["x_label"] == 0).all()
    pd.testing.assert_frame_equal(eval_rows(out), eval_rows(ds))
    everything, _ = delete_interactions(ds, 0.6, seed=1)  # round(5.4) = 5: every user keeps exactly one
    assert np.bincount(everything.split(0)[0]).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="6 train rows to delete but only 5"):
        delete_interactions(ds, 0.7, seed=1)


def test_delete_is_seeded_and_never_empties_a_user_on_a_larger_set():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), rng.integers(1, 8, 300))
    inter = pd.DataFrame({"userID": users, "itemID": rng.integers(0, 50, len(users)), "x_label": 0})
    inter = pd.concat([inter, pd.DataFrame({"userID": [0, 1], "itemID": [0, 1], "x_label": [1, 2]})])
    ds = Dataset("big", 300, 50, inter.reset_index(drop=True))
    a, rows_a = delete_interactions(ds, 0.4, seed=3)
    b, rows_b = delete_interactions(ds, 0.4, seed=3)
    c, _ = delete_interactions(ds, 0.4, seed=4)
    pd.testing.assert_frame_equal(a.inter, b.inter)
    pd.testing.assert_frame_equal(rows_a, rows_b)
    assert not a.inter.equals(c.inter)
    assert len(rows_a) == round(0.4 * len(users))
    assert np.bincount(a.split(0)[0], minlength=300).min() == 1


@pytest.mark.parametrize("modality", ["text", "image", "both"])
def test_modality_swaps_exactly_the_recorded_items(modality):
    ds = tiny()
    out, _ = make_noisy_copy(ds, "modality", ratio=0.4, seed=2, modality=modality)  # round(0.4 * 5) = 2 items
    record = out.meta["noise"]
    items, donors = np.array(record["items"]), np.array(record["donors"])
    assert len(items) == 2 == len(set(items.tolist())) and (items != donors).all()
    assert (record["kind"], record["modality"], record["ratio"]) == ("modality", modality, 0.4)
    swapped = {"text": ["text_feat"], "image": ["image_feat"], "both": ["text_feat", "image_feat"]}[modality]
    for key in ("text_feat", "image_feat"):
        before, after = getattr(ds, key), getattr(out, key)
        changed = np.flatnonzero((before != after).any(axis=1))
        if key in swapped:
            assert changed.tolist() == sorted(items.tolist())  # features are distinct, so every swap shows
            np.testing.assert_array_equal(after[items], before[donors])
        else:
            assert changed.size == 0
    pd.testing.assert_frame_equal(out.inter, ds.inter)


def test_natural_labels_low_ratings_and_filters_eval_only_when_asked():
    ds = tiny()
    out = label_natural(ds)
    noisy = out.inter[out.inter["is_noise"] == 1]
    assert set(zip(noisy["userID"], noisy["itemID"])) == {(0, 1), (0, 2), (2, 3)}
    assert (noisy["x_label"] == 0).all() and len(out.inter) == len(ds.inter)
    pd.testing.assert_frame_equal(eval_rows(out), eval_rows(ds))
    assert out.meta["noise"]["n_noise"] == 3 and out.meta["noise"]["n_eval_dropped"] == 0
    filtered = label_natural(ds, max_noisy_rating=1, eval_min_rating=4)
    assert filtered.train_noise_labels.sum() == 1  # only (0,1) is rated 1
    dropped = set(zip(eval_rows(ds)["userID"], eval_rows(ds)["itemID"])) - set(
        zip(eval_rows(filtered)["userID"], eval_rows(filtered)["itemID"])
    )
    assert dropped == {(0, 4), (2, 0), (3, 1)} and filtered.meta["noise"]["n_eval_dropped"] == 3
    assert train_pairs(filtered) == train_pairs(ds)


def test_argument_errors_name_the_problem():
    ds = tiny()
    with pytest.raises(ValueError, match="no rating column"):
        label_natural(tiny(with_rating=False))
    with pytest.raises(ValueError, match="takes no ratio"):
        make_noisy_copy(ds, "natural", ratio=0.2)
    with pytest.raises(ValueError, match="needs a ratio"):
        make_noisy_copy(ds, "delete")
    with pytest.raises(ValueError, match="unknown noise kind 'flip'"):
        make_noisy_copy(ds, "flip", ratio=0.1)
    with pytest.raises(ValueError, match="has no text and image features"):
        make_noisy_copy(Dataset("x", 4, 5, ds.inter), "modality", ratio=0.2, modality="both")


def test_cli_writes_the_copy_its_record_and_the_deleted_rows(tmp_path, capsys):
    save_dataset(tiny(), tmp_path / "base")
    assert main(["data", "noise", "--data", str(tmp_path / "base"), "--out", str(tmp_path / "d"), "--kind", "delete",
                 "--ratio", "0.5", "--seed", "1"]) == 0  # fmt: skip
    assert "4 train rows deleted" in capsys.readouterr().out
    copy = load_dataset(tmp_path / "d")
    deleted = pd.read_csv(tmp_path / "d" / "noise_deleted.tsv", sep="\t")
    expected_copy, expected_rows = delete_interactions(load_dataset(tmp_path / "base", drop_cold_eval=False), 0.5, 1)
    pd.testing.assert_frame_equal(copy.inter, expected_copy.inter, check_dtype=False)
    pd.testing.assert_frame_equal(deleted, expected_rows, check_dtype=False)
    meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert meta["noise"]["kind"] == "delete" and meta["derived_from"] == str(tmp_path / "base")
    assert main(["data", "noise", "--data", str(tmp_path / "base"), "--out", str(tmp_path / "n"),
                 "--kind", "natural", "--eval-min-rating", "4"]) == 0  # fmt: skip
    assert load_dataset(tmp_path / "n").train_noise_labels.sum() == 3


class _Inputs:
    def __init__(self, ds: Dataset):
        self.train_items = ds.split(0)[1]
        self.n_items = ds.n_items


@pytest.mark.parametrize("kind, ratio", [("add", 0.3), ("modality", 0.4), ("natural", None), ("delete", 0.5)])
def test_detection_scores_the_false_set_against_each_kinds_labels(tmp_path, kind, ratio):
    copy, _ = make_noisy_copy(tiny(), kind, ratio=ratio, seed=2)
    users, items = copy.split(0)
    if kind == "modality":
        truth = np.isin(items, copy.meta["noise"]["items"])
    else:
        truth = copy.train_noise_labels if copy.train_noise_labels is not None else None
    predicted = np.zeros(len(users), dtype=bool)
    predicted[:2] = True  # the first two train rows flagged
    report = detection_report(tmp_path / "denoise.json", copy, _Inputs(copy), torch.from_numpy(predicted), None, {})
    if kind == "delete":
        assert report["noise_kind"] is None  # nothing false was added
        return
    hits = int((predicted & truth).sum())
    assert report["noise_kind"]["kind"] == kind
    assert report["noise_kind"]["precision"] == pytest.approx(hits / 2)
    assert report["noise_kind"]["recall"] == pytest.approx(hits / truth.sum())
