"""Injected interaction noise (train only, labelled) and modality corruption."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from guider.data import Dataset
from guider.data.noise import corrupt_modality, inject_noise
from guider.data.sources.split import split_per_user


def make_dataset(n_users=200, n_items=120, per_user=12, seed=0, with_features=False):
    """Users pick items from a Zipf-like popularity, so item counts are very unequal."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    rows = []
    for user in range(n_users):
        size = min(rng.integers(5, 2 * per_user), n_items)
        items = rng.choice(n_items, size, replace=False, p=weights / weights.sum())
        rows += [(user, item, float(rng.integers(1, 6)), int(rng.integers(10**9, 2 * 10**9))) for item in items]
    inter = pd.DataFrame(rows, columns=["userID", "itemID", "rating", "timestamp"])
    inter["x_label"] = split_per_user(inter["userID"], inter["itemID"], inter["timestamp"], seed=0)
    feats = {}
    if with_features:
        feats = {
            "text_feat": rng.normal(size=(n_items, 8)).astype(np.float32),
            "image_feat": rng.normal(size=(n_items, 5)).astype(np.float32),
        }
    return Dataset("toy", n_users, n_items, inter, meta={"source": "test"}, **feats)


def pair_keys(frame, n_items):
    return frame["userID"].to_numpy() * n_items + frame["itemID"].to_numpy()


@pytest.mark.parametrize("mode", ["popular", "uniform"])
def test_counts_labels_and_train_only(mode):
    ds = make_dataset()
    n_train = int((ds.inter["x_label"] == 0).sum())
    out = inject_noise(ds, 0.3, seed=1, mode=mode)
    new = out.inter.iloc[len(ds.inter) :]
    assert len(new) == round(0.3 * n_train) == out.meta["noise"]["n_noise"]
    assert (new["is_noise"] == 1).all() and (new["x_label"] == 0).all()
    old = out.inter.iloc[: len(ds.inter)]
    assert (old["is_noise"] == 0).all()
    pd.testing.assert_frame_equal(old.drop(columns="is_noise"), ds.inter)
    assert out.meta["noise"] == {"kind": "add", "ratio": 0.3, "mode": mode, "seed": 1, "n_noise": len(new)}
    assert out.meta["source"] == "test" and "noise" not in ds.meta  # the input is untouched
    assert "is_noise" not in ds.inter.columns


def test_no_duplicates_and_no_existing_positives():
    ds = make_dataset()
    out = inject_noise(ds, 0.5, seed=2)
    keys = pair_keys(out.inter, ds.n_items)
    assert len(np.unique(keys)) == len(keys)
    new_keys = pair_keys(out.inter.iloc[len(ds.inter) :], ds.n_items)
    assert not np.isin(new_keys, pair_keys(ds.inter, ds.n_items)).any()


def test_noise_rows_look_like_their_user():
    ds = make_dataset()
    out = inject_noise(ds, 0.3, seed=3)
    train = ds.inter[ds.inter["x_label"] == 0]
    window = train.groupby("userID")["timestamp"].agg(["min", "max"])
    new = out.inter.iloc[len(ds.inter) :]
    low, high = window["min"].reindex(new["userID"]).to_numpy(), window["max"].reindex(new["userID"]).to_numpy()
    assert ((new["timestamp"].to_numpy() >= low) & (new["timestamp"].to_numpy() <= high)).all()
    assert set(new["rating"]) <= set(train["rating"])
    assert out.inter.dtypes.drop("is_noise").equals(ds.inter.dtypes)


def test_popular_mode_follows_train_popularity():
    ds = make_dataset(n_users=400)
    train = ds.inter[ds.inter["x_label"] == 0]
    popularity = np.bincount(train["itemID"], minlength=ds.n_items)
    activity = np.bincount(train["userID"], minlength=ds.n_users)
    new = inject_noise(ds, 0.3, seed=4).inter.iloc[len(ds.inter) :]
    assert spearmanr(np.bincount(new["itemID"], minlength=ds.n_items), popularity)[0] > 0.6
    assert spearmanr(np.bincount(new["userID"], minlength=ds.n_users), activity)[0] > 0.5


def test_uniform_mode_ignores_popularity():
    ds = make_dataset(n_users=400)
    train = ds.inter[ds.inter["x_label"] == 0]
    popularity = np.bincount(train["itemID"], minlength=ds.n_items)
    new = inject_noise(ds, 0.3, seed=4, mode="uniform").inter.iloc[len(ds.inter) :]
    counts = np.bincount(new["itemID"], minlength=ds.n_items)
    # popular items have fewer free users, so rejection makes the correlation slightly negative
    assert spearmanr(counts, popularity)[0] < 0.2
    assert counts.max() < 3 * counts.mean()


def test_seeded_reproducibility():
    ds = make_dataset()
    a, b = inject_noise(ds, 0.2, seed=7), inject_noise(ds, 0.2, seed=7)
    pd.testing.assert_frame_equal(a.inter, b.inter)
    c = inject_noise(ds, 0.2, seed=8)
    assert not a.inter.equals(c.inter)


def test_zero_ratio_only_adds_labels():
    ds = make_dataset()
    out = inject_noise(ds, 0.0, seed=0)
    assert len(out.inter) == len(ds.inter) and (out.inter["is_noise"] == 0).all()
    assert out.train_noise_labels is not None and not out.train_noise_labels.any()


def test_existing_labels_are_kept_when_noise_is_added_twice():
    ds = make_dataset()
    once = inject_noise(ds, 0.1, seed=0)
    twice = inject_noise(once, 0.1, seed=1)
    assert twice.inter["is_noise"].sum() == once.inter["is_noise"].sum() + twice.meta["noise"]["n_noise"]
    keys = pair_keys(twice.inter, ds.n_items)
    assert len(np.unique(keys)) == len(keys)


@pytest.mark.parametrize(
    "ratio, mode, match",
    [(0.1, "exposure", "unknown mode"), (-0.1, "popular", "ratio"), (50.0, "popular", "too large")],
)
def test_bad_arguments(ratio, mode, match):
    with pytest.raises(ValueError, match=match):
        inject_noise(make_dataset(n_users=30, n_items=20), ratio, seed=0, mode=mode)


@pytest.mark.parametrize("modality, key", [("text", "text_feat"), ("image", "image_feat")])
def test_corrupt_modality_swaps_recorded_rows(modality, key):
    ds = make_dataset(with_features=True)
    out = corrupt_modality(ds, 0.25, modality, seed=3)
    record = out.meta["noise"]
    assert (record["kind"], record["modality"], record["ratio"], record["seed"]) == ("modality", modality, 0.25, 3)
    items, donors = np.array(record["items"]), np.array(record["donors"])
    assert len(items) == round(0.25 * ds.n_items) == len(np.unique(items))
    assert (items != donors).all()
    before, after = getattr(ds, key), getattr(out, key)
    np.testing.assert_array_equal(after[items], before[donors])
    untouched = np.setdiff1d(np.arange(ds.n_items), items)
    np.testing.assert_array_equal(after[untouched], before[untouched])
    other = "image_feat" if key == "text_feat" else "text_feat"
    assert getattr(out, other) is getattr(ds, other)
    assert "noise" not in ds.meta and not np.shares_memory(before, after)


def test_corrupt_modality_is_seeded_and_refuses_a_second_swap():
    ds = make_dataset(with_features=True)
    a = corrupt_modality(ds, 0.1, "text", seed=1)
    assert a.meta == corrupt_modality(ds, 0.1, "text", seed=1).meta
    assert a.meta["noise"]["items"] != corrupt_modality(ds, 0.1, "text", seed=2).meta["noise"]["items"]
    with pytest.raises(ValueError, match="already a modality-noise copy"):
        corrupt_modality(a, 0.1, "image", seed=2)


def test_corrupt_modality_errors():
    with pytest.raises(ValueError, match="no text features"):
        corrupt_modality(make_dataset(), 0.1, "text", seed=0)
    ds = make_dataset(with_features=True)
    with pytest.raises(ValueError, match="unknown modality"):
        corrupt_modality(ds, 0.1, "audio", seed=0)
    with pytest.raises(ValueError, match="fraction"):
        corrupt_modality(ds, 1.5, "text", seed=0)
