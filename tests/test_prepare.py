"""Preprocessing of the upstream formats: parsers, protocol steps and the prepared folder."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from http_fixture import FIXTURES

from guider.cli import main
from guider.data.format.dataset import DatasetError
from guider.data.format.mmrec import load_dataset
from guider.data.sources.amazon import item_sentence, read_meta, read_ratings
from guider.data.sources.microlens import read_pairs, read_titles
from guider.data.sources.preprocess import build_interactions, drop_missing_and_duplicates, k_core, reindex

AMAZON = FIXTURES / "data/amazon/productGraph/categoryFiles"
MICROLENS = FIXTURES / "MicroLens-100k-Dataset"
P = [f"B00000000{n}" for n in range(1, 9)]  # the fixture's items P1..P8
U = [f"A{n}USERX{n:04d}" for n in range(1, 9)]


def naive_k_core(rows: list[tuple], k: int) -> list[tuple]:
    """Reference: drop one under-k user or item at a time until none is left."""
    rows = list(rows)
    while True:
        users, items = Counter(r[0] for r in rows), Counter(r[1] for r in rows)
        bad_users = [u for u, n in users.items() if n < k]
        bad_items = [i for i, n in items.items() if n < k]
        if not bad_users and not bad_items:
            return rows
        if bad_users:
            rows = [r for r in rows if r[0] != bad_users[0]]
        else:
            rows = [r for r in rows if r[1] != bad_items[0]]


# --- protocol steps ---------------------------------------------------------------------


def test_k_core_matches_a_one_at_a_time_reference_on_random_graphs():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(50, 400))
        rows = [(f"u{rng.integers(0, 30)}", f"i{rng.integers(0, 25)}", t) for t in range(n)]
        frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
        for k in (2, 3, 5):
            got = sorted(map(tuple, k_core(frame, k).itertuples(index=False)))
            assert got == sorted(naive_k_core(rows, k)), (trial, k)


def test_reindex_follows_first_appearance_like_mmrec():
    frame = pd.DataFrame({"user": ["b", "a", "b", "c"], "item": ["x", "y", "y", "x"]})
    users, items, user_ids, item_ids = reindex(frame)
    assert users.tolist() == [0, 1, 0, 2] and items.tolist() == [0, 1, 1, 0]
    assert user_ids.tolist() == ["b", "a", "c"] and item_ids.tolist() == ["x", "y"]


def test_missing_fields_and_duplicates_are_dropped_repeats_at_another_time_kept():
    frame = pd.DataFrame(
        {
            "user": ["a", "a", "a", None, "b"],
            "item": ["x", "x", "x", "y", "y"],
            "rating": [5.0] * 5,
            "timestamp": [1, 1, 2, 3, None],
        }
    )
    clean, n_missing, n_duplicate = drop_missing_and_duplicates(frame)
    assert (n_missing, n_duplicate) == (2, 1)
    assert clean[["user", "item", "timestamp"]].values.tolist() == [["a", "x", 1], ["a", "x", 2]]


# --- Amazon parsers ---------------------------------------------------------------------


def test_fixture_ratings_give_the_hand_counted_core():
    raw = read_ratings(AMAZON / "ratings_Baby.csv")  # 31 core + 11 noise rows, a duplicate, a row without time
    assert raw.shape == (44, 4) and raw["user"].iloc[0] == U[0] and raw["item"].iloc[0] == P[1]
    inter = build_interactions(raw, k=5, seed=0)
    assert (inter.n_users, inter.n_items, len(inter.table)) == (6, 6, 31)
    assert inter.counts == {"rows_read": 44, "rows_missing_fields": 1, "rows_duplicate": 1, "rows_after_k_core": 31}
    assert inter.item_ids.tolist() == [P[1], P[2], P[3], P[4], P[5], P[0]]  # U1 rates P2 first
    assert inter.user_ids.tolist() == U[:6]
    labels = Counter(inter.table["x_label"])  # n=5: 3/1/1 (five users); n=6: 4/1/1 (U1)
    assert (labels[0], labels[1], labels[2]) == (19, 6, 6)


def test_ratings_with_a_bad_number_name_the_line(tmp_path):
    path = tmp_path / "ratings_Baby.csv"
    path.write_text("A,B,5.0,100\nA,C,five,101\n")
    with pytest.raises(DatasetError, match=r"ratings_Baby.csv: line 2: rating 'five' is not a number"):
        read_ratings(path)
    path.write_text("A,B,5.0,100\nA,C,4.0,101,extra\n")
    with pytest.raises(DatasetError, match="ratings_Baby.csv"):
        read_ratings(path)


def test_meta_lines_are_python_literals_parsed_only_for_kept_items():
    meta = read_meta(AMAZON / "meta_Baby.json.gz", keep={P[0], P[3]})
    assert set(meta) == {P[0], P[3]}
    assert meta[P[0]]["categories"][0] == ["Baby", "Cat1", "Sub"]
    assert meta[P[0]]["imUrl"].endswith("/images/I/item1.jpg")
    assert "brand" not in meta[P[3]]
    assert len(read_meta(AMAZON / "meta_Baby.json.gz")) == 9  # every line when no filter


def _gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def test_a_malformed_meta_line_is_reported_with_its_line_number(tmp_path):
    good = repr({"asin": "B1", "title": "ok"})
    path = _gz(tmp_path / "meta.json.gz", [good, good.replace("B1", "B2"), "{'asin': 'B3', 'title': 'broken"])
    with pytest.raises(DatasetError, match=r"meta.json.gz: line 3: not a Python-literal dict"):
        read_meta(path)
    path = _gz(tmp_path / "meta2.json.gz", [good, "{'title': 'no asin here'}"])
    with pytest.raises(DatasetError, match=r"line 2: no 'asin' field"):
        read_meta(path)


def test_meta_is_never_evaluated_as_code(tmp_path):
    marker = tmp_path / "pwned"
    line = "{'asin': 'B1', 'title': __import__('pathlib').Path(%r).write_text('x')}" % str(marker)
    with pytest.raises(DatasetError, match="line 1"):
        read_meta(_gz(tmp_path / "meta.json.gz", [line]))
    assert not marker.exists()


def test_a_file_that_is_not_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "meta.json.gz"
    path.write_text("{'asin': 'B1'}\n")
    with pytest.raises(DatasetError, match="not a readable gzip file"):
        read_meta(path)


def test_item_sentence_is_mmrec_s_title_brand_first_category_path_description():
    record = {"title": "T", "brand": "Br", "categories": [["A", "B"], ["C"]], "description": "one\ntwo"}
    assert item_sentence(record) == "T Br A B one two"
    assert item_sentence({"title": "T", "brand": "", "categories": [["A"]]}) == "T   A  "  # MMRec fills " "
    assert item_sentence(None) == " " * 5


# --- MicroLens parsers ------------------------------------------------------------------


def test_pairs_accept_a_header_and_become_clicks():
    raw = read_pairs(MICROLENS / "MicroLens-100k_pairs.csv")
    assert list(raw.columns) == ["user", "item", "rating", "timestamp"]
    assert len(raw) == 42 and raw["rating"].eq(1.0).all()
    assert raw.iloc[0].tolist() == ["1", "102", 1.0, 1650000000000]


def test_pairs_with_a_bad_timestamp_name_the_line(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("user,item,timestamp\n1,2,100\n1,3,soon\n")
    with pytest.raises(DatasetError, match="line 3: timestamp 'soon'"):
        read_pairs(path)


def test_titles_keep_quoted_and_unquoted_commas():
    titles = read_titles(MICROLENS / "MicroLens-100k_title_en.csv")
    assert titles["101"] == "A cat video, with a comma"
    assert titles["103"] == 'title "quoted" three'
    assert titles["104"] == "four, unquoted comma"
    assert titles["106"] == "" and "108" not in titles


# --- the command ------------------------------------------------------------------------


def _resources(tmp_path: Path, name: str, files: list[Path], images: dict[str, Path] | None = None) -> Path:
    folder = tmp_path / "resources" / name
    folder.mkdir(parents=True)
    for file in files:
        shutil.copy(file, folder / file.name)
    for target, source in (images or {}).items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / target)
    return tmp_path / "resources"


def test_prepare_amazon_writes_a_loadable_folder_with_content_and_provenance(tmp_path, capsys):
    resources = _resources(
        tmp_path,
        "baby",
        [AMAZON / "ratings_Baby.csv", AMAZON / "meta_Baby.json.gz"],
        {
            "images/B000000001.jpg": FIXTURES / "images/I/item1.jpg",
            "images/B000000003.png": FIXTURES / "images/I/item3.png",
        },
    )
    out = tmp_path / "data/baby"
    assert main(["data", "prepare", "baby", "--resources", str(resources), "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "users 6  items 6  interactions 31" in printed and "DIFFERENT" in printed
    ds = load_dataset(out)
    assert (ds.n_users, ds.n_items, len(ds.inter)) == (6, 6, 31)
    items = pd.read_csv(out / "i_id_mapping.csv", sep="\t", dtype={"asin": str})
    assert items.columns.tolist() == ["asin", "itemID"] and items["asin"].tolist() == [
        P[1],
        P[2],
        P[3],
        P[4],
        P[5],
        P[0],
    ]
    users = pd.read_csv(out / "u_id_mapping.csv", sep="\t")
    assert users.columns.tolist() == ["user_id", "userID"] and users["user_id"].tolist() == U[:6]
    content = pd.read_csv(out / "item_content.csv", keep_default_na=False)
    assert content["text"][0] == "Baby thing 2 Brand2 Baby Cat2 Sub Line one of item 2. Line two."
    assert content["text"][2].startswith("Baby thing 4   Baby Cat4")  # P4 has no brand
    assert content["image"].tolist() == ["", "images/B000000003.png", "", "", "", "images/B000000001.jpg"]
    assert (out / "images/B000000001.jpg").read_bytes() == (FIXTURES / "images/I/item1.jpg").read_bytes()
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["content"]["items_without_image"] == [0, 2, 3, 4]
    assert (meta["protocol"]["k_core"], meta["protocol"]["split_seed"]) == (5, 3)
    assert meta["source"]["files"]["ratings"]["sha256"] and "image_features" not in meta["source"]["files"]
    assert meta["statistics_check"]["match"] is False
    assert meta["statistics"]["train"] == 19
    # the ratings stay in the folder, so the natural-noise copy can label the low-rated rows
    from guider.data.noise import label_natural

    assert ds.inter["rating"].between(1, 5).all() and ds.inter["rating"].nunique() > 1
    low = int(((ds.inter["x_label"] == 0) & (ds.inter["rating"] <= 4)).sum())  # the fixture rates 3 to 5
    assert low > 0 and label_natural(ds, max_noisy_rating=4).train_noise_labels.sum() == low


def test_the_split_depends_on_the_seed_only(tmp_path):
    resources = _resources(tmp_path, "baby", [AMAZON / "ratings_Baby.csv", AMAZON / "meta_Baby.json.gz"])
    labels = {}
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        main(
            [
                "data",
                "prepare",
                "baby",
                "--resources",
                str(resources),
                "--out",
                str(tmp_path / run),
                "--seed",
                str(seed),
            ]
        )
        labels[run] = pd.read_csv(tmp_path / run / "baby.inter", sep="\t")["x_label"].tolist()
    assert labels["a"] == labels["b"] and labels["a"] != labels["c"]


def test_prepare_microlens_uses_titles_and_covers(tmp_path):
    resources = _resources(
        tmp_path,
        "microlens",
        [MICROLENS / "MicroLens-100k_pairs.csv", MICROLENS / "MicroLens-100k_title_en.csv"],
        {f"covers/{n}.jpg": MICROLENS / f"MicroLens-100k_covers/{n}.jpg" for n in (101, 102)},
    )
    out = tmp_path / "data/microlens"
    assert main(["data", "prepare", "microlens", "--resources", str(resources), "--out", str(out)]) == 0
    ds = load_dataset(out)
    assert (ds.n_users, ds.n_items, len(ds.inter)) == (6, 6, 31)
    assert ds.inter["timestamp"].min() == 1650000000000
    content = pd.read_csv(out / "item_content.csv", keep_default_na=False)
    ids = pd.read_csv(out / "i_id_mapping.csv", sep="\t", dtype={"asin": str})["asin"].tolist()
    assert ids == ["102", "103", "104", "105", "106", "101"]
    assert content["text"].tolist() == [
        "plain title two",
        'title "quoted" three',
        "four, unquoted comma",
        "five",
        "",
        "A cat video, with a comma",
    ]
    assert content["image"].tolist() == ["images/102.jpg", "", "", "", "", "images/101.jpg"]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["content"]["items_without_title"] == [4]


def test_missing_inputs_say_how_to_get_them(tmp_path, caplog):
    (tmp_path / "resources/baby").mkdir(parents=True)
    assert (
        main(["data", "prepare", "baby", "--resources", str(tmp_path / "resources"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "ratings_Baby.csv" in caplog.text and "guider data download baby" in caplog.text
    assert not (tmp_path / "o").exists()


def test_strict_mode_fails_when_statistics_differ_from_the_protocol(tmp_path):
    resources = _resources(tmp_path, "baby", [AMAZON / "ratings_Baby.csv", AMAZON / "meta_Baby.json.gz"])
    code = main(["data", "prepare", "baby", "--resources", str(resources), "--out", str(tmp_path / "o"), "--strict"])
    assert code == 2 and not (tmp_path / "o").exists()
