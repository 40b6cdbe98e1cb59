"""End to end on a local server: download -> prepare -> features -> export, plus the feature CLIs' parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from http_fixture import FIXTURES, UpstreamServer

import guider.features.image as image_module
import guider.features.text as text_module
from guider.cli import main
from guider.data.format.dataset import DatasetError
from guider.data.format.mmrec import load_dataset, save_dataset
from guider.features.amazon_cnn import read_amazon_cnn

CNN_FILE = FIXTURES / "data/amazon/productGraph/image_features/categoryFiles/image_features_Baby.b"
ITEM_ORDER = [2, 3, 4, 5, 6, 1]  # fixture item Pn at each itemID (first appearance in the ratings)


def cnn_vector(n: int) -> np.ndarray:
    return (n + np.arange(4096) / 4096.0).astype(np.float32)  # as tests/fixtures/upstream/make_fixtures.py


def download_and_prepare(tmp_path: Path, name: str) -> Path:
    with UpstreamServer() as server:
        code = main(
            [
                "data",
                "download",
                name,
                "--mirror",
                server.url,
                "--resources",
                str(tmp_path / "resources"),
                "--lock",
                str(tmp_path / "lock.json"),
                "--workers",
                "2",
                "--no-progress",
            ]
        )
    assert code == 0
    out = tmp_path / "data" / name
    assert main(["data", "prepare", name, "--resources", str(tmp_path / "resources"), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_amazon_pipeline_with_the_real_encoders(tmp_path):
    out = download_and_prepare(tmp_path, "baby")
    assert main(["features", "text", "--data", str(out), "--no-progress"]) == 0
    assert main(["features", "image", "--data", str(out), "--image-size", "64", "--no-progress"]) == 0
    ds = load_dataset(out)
    assert (ds.n_users, ds.n_items, len(ds.inter)) == (6, 6, 31)
    assert ds.text_feat.shape == (6, 384) and ds.image_feat.shape == (6, 1280)
    norms = np.linalg.norm(ds.text_feat, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)  # all-MiniLM-L6-v2 normalises its embeddings
    image = json.loads((out / "dataset.json").read_text())["features"]["image"]
    assert image["imputed_items"] == [3, 4]  # P5's image answered 404, P6 has no imUrl
    present = ds.image_feat[[0, 1, 2, 5]].astype(np.float64)
    np.testing.assert_allclose(ds.image_feat[3], present.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(ds.image_feat[0], ds.image_feat[1])  # different images, different features


def test_amazon_pipeline_counts_imputation_cnn_features_and_export(tmp_path, monkeypatch):
    out = download_and_prepare(tmp_path, "baby")
    seen = {}
    monkeypatch.setattr(text_module, "encode_texts", lambda texts, **kw: _fake_texts(texts, seen))
    monkeypatch.setattr(image_module, "encode_images", lambda images, **kw: _fake_images(images, seen))
    assert main(["features", "text", "--data", str(out), "--no-progress"]) == 0
    assert main(["features", "image", "--data", str(out), "--no-progress"]) == 0
    assert seen["texts"][0] == "Baby thing 2 Brand2 Baby Cat2 Sub Line one of item 2. Line two."
    assert [p.name if p else None for p in seen["images"]] == [
        "B000000002.jpg",
        "B000000003.png",
        "B000000004.jpg",
        None,
        None,
        "B000000001.jpg",
    ]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["features"]["image"]["imputed_items"] == [3, 4]
    assert meta["content"]["items_without_image"] == [3, 4]
    assert "images_failed.tsv" in meta["source"]["failed_images_log"]

    assert main(["features", "image", "--data", str(out), "--encoder", "amazon_cnn"]) == 0
    ds = load_dataset(out)
    for item, n in enumerate(ITEM_ORDER):
        if n != 6:
            np.testing.assert_array_equal(ds.image_feat[item], cnn_vector(n))
    expected_mean = np.mean([cnn_vector(n) for n in (2, 3, 4, 5, 1)], axis=0, dtype=np.float64)
    np.testing.assert_allclose(ds.image_feat[4], expected_mean, rtol=1e-6)  # P6 has no record
    assert json.loads((out / "dataset.json").read_text())["features"]["image"]["imputed_items"] == [4]

    mmrec = tmp_path / "mmrec" / "baby"
    assert main(["data", "export", str(out), "--out", str(mmrec)]) == 0
    assert sorted(p.name for p in mmrec.iterdir()) == [
        "baby.inter",
        "i_id_mapping.csv",
        "image_feat.npy",
        "text_feat.npy",
        "u_id_mapping.csv",
    ]
    inter = pd.read_csv(mmrec / "baby.inter", sep="\t")
    assert inter.columns.tolist() == ["userID", "itemID", "rating", "timestamp", "x_label"] and len(inter) == 31
    np.testing.assert_array_equal(np.load(mmrec / "image_feat.npy"), ds.image_feat)


def test_a_rerun_with_the_same_encoder_reads_the_cache(tmp_path, monkeypatch):
    out = download_and_prepare(tmp_path, "baby")
    monkeypatch.setattr(text_module, "encode_texts", lambda texts, **kw: _fake_texts(texts, {}))
    assert main(["features", "text", "--data", str(out), "--no-progress"]) == 0
    first = np.load(out / "text_feat.npy")

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder ran although the features were cached")

    monkeypatch.setattr(text_module, "encode_texts", refuse)
    assert main(["features", "text", "--data", str(out), "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(out / "text_feat.npy"), first)
    with pytest.raises(AssertionError, match="encoder ran"):  # another encoder is another key
        main(["features", "text", "--data", str(out), "--encoder", "other-model"])


def test_microlens_pipeline_uses_titles_and_covers(tmp_path, monkeypatch):
    out = download_and_prepare(tmp_path, "microlens")
    seen = {}
    monkeypatch.setattr(text_module, "encode_texts", lambda texts, **kw: _fake_texts(texts, seen))
    monkeypatch.setattr(image_module, "encode_images", lambda images, **kw: _fake_images(images, seen))
    assert main(["features", "text", "--data", str(out)]) == 0
    assert main(["features", "image", "--data", str(out)]) == 0
    assert seen["texts"] == [
        "plain title two",
        'title "quoted" three',
        "four, unquoted comma",
        "five",
        "",
        "A cat video, with a comma",
    ]
    assert [p.name if p else None for p in seen["images"]] == [
        "102.jpg",
        "103.jpg",
        "104.jpg",
        None,
        "106.jpg",
        "101.jpg",
    ]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["features"]["image"]["imputed_items"] == [3]  # video 105's cover answered 404
    assert meta["features"]["text"]["empty_text_items"] == [4]
    assert load_dataset(out).text_feat.shape == (6, 3)


def test_export_keeps_mmrec_s_five_columns_and_writes_identity_maps(tmp_path):
    from conftest import make_dataset

    ds = make_dataset(n_users=8, n_items=10, per_user=4)
    ds.inter["is_noise"] = 0
    src = save_dataset(ds, tmp_path / "src")
    assert main(["data", "export", str(src), "--out", str(tmp_path / "mm" / "tiny")]) == 0
    out = tmp_path / "mm" / "tiny"
    inter = pd.read_csv(out / "tiny.inter", sep="\t")
    assert inter.columns.tolist() == ["userID", "itemID", "rating", "timestamp", "x_label"]
    pd.testing.assert_frame_equal(inter, ds.inter[inter.columns.tolist()].reset_index(drop=True), check_dtype=False)
    items = pd.read_csv(out / "i_id_mapping.csv", sep="\t")
    assert items.columns.tolist() == ["asin", "itemID"] and items["itemID"].tolist() == list(range(10))
    assert np.load(out / "text_feat.npy").dtype == np.float32
    back = load_dataset(out)
    np.testing.assert_array_equal(back.image_feat, ds.image_feat.astype(np.float32))


# --- Amazon CNN features file -----------------------------------------------------------


def test_cnn_file_rows_are_read_by_asin_and_missing_ones_imputed():
    features, missing = read_amazon_cnn(CNN_FILE, ["B000000003", "B000000006", "B000000001"])
    assert features.shape == (3, 4096) and missing == [1]
    np.testing.assert_array_equal(features[0], cnn_vector(3))
    np.testing.assert_array_equal(features[2], cnn_vector(1))
    np.testing.assert_allclose(features[1], (cnn_vector(3) + cnn_vector(1)) / 2, rtol=1e-6)


def test_a_truncated_cnn_file_or_the_wrong_category_is_a_clear_error(tmp_path):
    truncated = tmp_path / "image_features_Baby.b"
    truncated.write_bytes(CNN_FILE.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="not a whole number of 16394-byte records"):
        read_amazon_cnn(truncated, ["B000000001"])
    with pytest.raises(DatasetError, match="none of the 2 items"):
        read_amazon_cnn(CNN_FILE, ["X000000001", "X000000002"])


def test_features_need_item_content(tmp_path, caplog):
    assert main(["features", "text", "--data", str(tmp_path)]) == 2
    assert "item_content.csv" in caplog.text


# --- fakes ------------------------------------------------------------------------------


def _fake_texts(texts, seen):
    seen["texts"] = list(texts)
    return np.array([[len(t), t.count(" "), 1.0] for t in texts], dtype=np.float32)  # [n, 3]


def _fake_images(images, seen):
    seen["images"] = list(images)
    present = [i for i, p in enumerate(images) if p is not None]
    features = np.zeros((len(images), 2), dtype=np.float32)
    for i in present:
        features[i] = [images[i].stat().st_size, i]
    missing = [i for i, p in enumerate(images) if p is None]
    features[missing] = features[present].mean(axis=0)
    return features, missing
