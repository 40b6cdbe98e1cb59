"""The synthetic dataset generator: folder contract, split, noise, misalignment, signal."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from guider.cli import main as cli_main
from guider.data import load_dataset
from guider.data.synthetic import generator as syn
from guider.data.synthetic.render import render
from guider.data.synthetic.text import describe
from guider.data.synthetic.vocab import BRANDS, CATEGORIES, COLOURS, MATERIALS, STYLES

SIZES = {"users": 150, "items": 80}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "noisy"
    syn.make_synthetic(out, noise_ratio=0.2, misaligned_ratio=0.1, seed=3, encode=False, **SIZES)
    return out


def expected_split(n):
    if n < 10:
        return n - 2, 1, 1
    n_eval = int(0.2 * n)
    return n - n_eval, n_eval // 2, n_eval - n_eval // 2


def test_folder_loads_with_declared_counts(noisy):
    ds = load_dataset(noisy)
    assert (ds.n_users, ds.n_items) == (150, 80)
    assert ds.text_feat is None and ds.image_feat is None
    assert not (noisy / "text_feat.npy").exists() and not (noisy / "image_feat.npy").exists()
    meta = json.loads((noisy / "dataset.json").read_text())
    assert meta["features"] == {} and meta["preset"] == "small" and meta["seed"] == 3
    assert meta["statistics"]["interactions"] == len(ds.inter) and ds.meta["dropped_cold_eval_rows"] == 0
    assert meta["generator"]["users"] == 150 and "category_concentration" in meta["generator"]


def test_five_core_and_protocol_split(noisy):
    inter = load_dataset(noisy).inter
    clean = inter[inter["is_noise"] == 0]
    assert clean.groupby("userID").size().min() >= 5
    assert clean.groupby("itemID").size().min() >= 5
    assert not clean.duplicated(["userID", "itemID"]).any()
    for user, rows in clean.groupby("userID"):
        counts = tuple(np.bincount(rows["x_label"], minlength=3))
        assert counts == expected_split(len(rows)), user


def test_noise_only_in_train(noisy):
    inter = load_dataset(noisy).inter
    noise = inter[inter["is_noise"] == 1]
    n_train_clean = int(((inter["is_noise"] == 0) & (inter["x_label"] == 0)).sum())
    assert len(noise) == round(0.2 * n_train_clean) > 0
    assert (noise["x_label"] == 0).all()
    assert not inter.duplicated(["userID", "itemID"]).any()
    meta = json.loads((noisy / "dataset.json").read_text())
    assert (
        meta["noise"]["ratio"] == 0.2 and meta["noise"]["mode"] == "popular" and meta["noise"]["n_noise"] == len(noise)
    )


def test_item_content_and_images(noisy):
    content = pd.read_csv(noisy / "item_content.csv")
    assert list(content.columns) == ["itemID", "text", "image"]
    assert content["itemID"].tolist() == list(range(80))
    for path in content["image"]:
        with Image.open(noisy / path) as img:
            assert img.size == (syn.IMAGE_SIZE, syn.IMAGE_SIZE) and img.mode == "RGB"
    attributes = pd.read_csv(noisy / "item_attributes.csv")
    for text, (_, row) in zip(content["text"], attributes.iterrows()):
        for word in (row["category"], row["colour"], row["material"], row["brand"], row["style"]):
            assert word in text.lower() or word in text


def test_misaligned_images_show_another_category(noisy):
    meta = json.loads((noisy / "dataset.json").read_text())
    misaligned, donors = meta["misaligned_items"], meta["misaligned_donors"]
    assert len(misaligned) == round(0.1 * 80) == len(set(misaligned))
    attributes = pd.read_csv(noisy / "item_attributes.csv")
    assert (attributes["category"][misaligned].to_numpy() != attributes["category"][donors].to_numpy()).all()
    codes = attribute_codes(attributes)
    for item in range(80):
        shown = donors[misaligned.index(item)] if item in misaligned else item
        expected = render(codes[shown], syn.IMAGE_SIZE, syn._rng(3, "images", item))
        with Image.open(noisy / syn.image_path(item)) as saved:
            assert np.array_equal(np.asarray(saved), np.asarray(expected)), item
        own = render(codes[item], syn.IMAGE_SIZE, syn._rng(3, "images", item))
        assert (item in misaligned) != np.array_equal(np.asarray(own), np.asarray(expected))


def attribute_codes(attributes: pd.DataFrame) -> list[dict]:
    vocab = {
        "category": [c.noun for c in CATEGORIES],
        "colour": list(COLOURS),
        "pattern": None,
        "material": list(MATERIALS),
        "style": list(STYLES),
        "brand": list(BRANDS),
    }
    from guider.data.synthetic.vocab import PATTERNS

    vocab["pattern"] = list(PATTERNS)
    return [{a: vocab[a].index(row[a]) for a in vocab} for _, row in attributes.iterrows()]


def read_all(folder):
    meta = json.loads((folder / "dataset.json").read_text())
    meta.pop("generation_seconds")
    return (folder / "synthetic.inter").read_text(), (folder / "item_content.csv").read_text(), meta


def test_same_seed_same_dataset(tmp_path):
    a = syn.make_synthetic(tmp_path / "a", seed=5, encode=False, users=60, items=40)
    b = syn.make_synthetic(tmp_path / "b", seed=5, encode=False, users=60, items=40)
    c = syn.make_synthetic(tmp_path / "c", seed=6, encode=False, users=60, items=40)
    assert read_all(a) == read_all(b)
    assert read_all(a)[0] != read_all(c)[0] and read_all(a)[1] != read_all(c)[1]
    assert (a / syn.image_path(7)).read_bytes() == (b / syn.image_path(7)).read_bytes()


def test_noise_leaves_the_clean_data_unchanged(tmp_path):
    clean = load_dataset(syn.make_synthetic(tmp_path / "clean", seed=2, encode=False, users=60, items=40)).inter
    noisy = load_dataset(
        syn.make_synthetic(
            tmp_path / "noisy", seed=2, encode=False, users=60, items=40, noise_ratio=0.3, noise_mode="uniform"
        )
    ).inter
    kept = noisy[noisy["is_noise"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, clean)


def test_output_folder_is_replaced(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    syn.make_synthetic(out, encode=False, users=30, items=25)
    assert not (out / "stale.txt").exists() and (out / "synthetic.inter").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]  # no staging folder left behind


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"preset": "huge"}, "unknown synthetic preset"),
        ({"noise_mode": "bursty"}, "unknown noise mode"),
        ({"users": 5}, "too small"),
        ({"misaligned_ratio": 1.5}, "misaligned ratio"),
        ({"noise_ratio": -1}, "noise ratio"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        syn.make_synthetic(tmp_path / "x", encode=False, **{"users": 30, "items": 25, **kwargs})
    assert not (tmp_path / "x").exists()


def test_tastes_carry_real_signal(tmp_path):
    """Ranking by the user's train categories beats popularity: interactions follow tastes."""
    folder = syn.make_synthetic(tmp_path / "d", encode=False, users=400, items=200, seed=1)
    ds = load_dataset(folder)
    category = pd.read_csv(folder / "item_attributes.csv")["category"].astype("category").cat.codes.to_numpy()
    train, test = ds.matrix(0), ds.matrix(2)
    popularity = np.asarray(train.sum(0)).ravel()
    user_cats = np.zeros((ds.n_users, category.max() + 1))
    np.add.at(user_cats, (ds.split(0)[0], category[ds.split(0)[1]]), 1.0)
    taste_scores = user_cats[:, category] + 1e-3 * popularity[None, :] / popularity.max()
    pop_scores = np.tile(popularity, (ds.n_users, 1)).astype(float)
    assert recall_at(taste_scores, train, test) > 1.5 * recall_at(pop_scores, train, test)


def recall_at(scores, train, test, k=20):
    scores = np.where(train.toarray() > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    truth = test.toarray()
    users = truth.sum(1) > 0
    return float((np.take_along_axis(truth, top, 1).sum(1)[users] / truth.sum(1)[users]).mean())


def test_cli_writes_a_loadable_folder(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(
        [
            "data",
            "synthetic",
            "--out",
            str(out),
            "--users",
            "40",
            "--items",
            "30",
            "--noise-ratio",
            "0.1",
            "--noise-mode",
            "uniform",
            "--seed",
            "4",
            "--no-features",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ds = load_dataset(out)
    assert summary["users"] == ds.n_users == 40 and summary["noise"]["mode"] == "uniform"
    assert json.loads((out / "dataset.json").read_text())["seed"] == 4


def test_description_and_render_follow_attributes():
    rng = np.random.default_rng(0)
    attrs = {"category": 9, "colour": 0, "pattern": 0, "material": 2, "style": 4, "brand": 5}
    text = describe(attrs, rng)
    for word in ("scarf", "red", "wool", "elegant", BRANDS[5]):
        assert word in text.lower() or word in text
    red = np.asarray(render(attrs, 64, np.random.default_rng(1)), dtype=float)
    blue = np.asarray(render({**attrs, "colour": 1}, 64, np.random.default_rng(1)), dtype=float)
    centre = (slice(24, 40), slice(24, 40))
    assert red[centre][..., 0].mean() > red[centre][..., 2].mean() + 50  # the glyph is red ...
    assert blue[centre][..., 2].mean() > blue[centre][..., 0].mean() + 50  # ... or blue
    other_brand = np.asarray(render({**attrs, "brand": 6}, 64, np.random.default_rng(1)), dtype=float)
    badge = (slice(4, 14), slice(4, 14))  # the logo in the top-left corner
    assert np.abs(other_brand[badge] - red[badge]).mean() > 30
    np.testing.assert_array_equal(other_brand[centre], red[centre])


@pytest.mark.slow
def test_small_preset_builds_quickly(tmp_path):
    """The acceptance size without encoders (encoders are timed in the report)."""
    import time

    start = time.perf_counter()
    ds = load_dataset(syn.make_synthetic(tmp_path / "small", encode=False))
    assert time.perf_counter() - start < 60
    stats = ds.statistics()
    assert (stats["users"], stats["items"]) == (2000, 1000) and 22_000 < stats["interactions"] < 28_000


def test_encoded_features_reflect_categories(tmp_path):
    folder = syn.make_synthetic(tmp_path / "enc", users=40, items=60, seed=0, encode=True)
    ds = load_dataset(folder)
    assert ds.text_feat.shape == (60, 384) and ds.image_feat.shape == (60, 1280)
    assert ds.text_feat.dtype == np.float32 and np.isfinite(ds.image_feat).all()
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["features"]["text"] == {"encoder": "all-MiniLM-L6-v2", "dim": 384, "input": "item_content.csv text"}
    assert meta["features"]["image"]["dim"] == 1280 and meta["features"]["image"]["imputed_items"] == []
    category = pd.read_csv(folder / "item_attributes.csv")["category"].to_numpy()
    unit = ds.text_feat / np.linalg.norm(ds.text_feat, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = (category[:, None] == category[None, :]) & ~np.eye(60, dtype=bool)
    different = category[:, None] != category[None, :]
    assert cos[same].mean() > cos[different].mean() + 0.1
