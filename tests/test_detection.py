"""Precision / recall / F1 of a detected noise set, and the misaligned-item lookup."""

import numpy as np
import pytest
from conftest import make_dataset

from guider.methods.detection import precision_recall_f1, ranking_auc
from guider.methods.reporting import misaligned_items


def test_precision_recall_f1_hand_computed():
    predicted = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    truth = np.array([1, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    got = precision_recall_f1(predicted, truth)
    assert got["precision"] == pytest.approx(2 / 4) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert got["base_rate"] == pytest.approx(3 / 8) and got["lift"] == pytest.approx(0.5 / (3 / 8))
    assert (got["true_positives"], got["predicted"], got["positives"], got["total"]) == (2, 4, 3, 8)


def test_empty_prediction_and_no_positives():
    got = precision_recall_f1(np.zeros(4, bool), np.zeros(4, bool))
    assert got["precision"] == got["recall"] == got["f1"] == 0.0 and got["lift"] is None


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        precision_recall_f1(np.zeros(3, bool), np.zeros(4, bool))


def test_misaligned_items_unites_generator_and_modality_noise_record():
    ds = make_dataset()
    assert misaligned_items(ds) is None
    ds.meta = {"misaligned_items": [4, 1], "noise": {"kind": "modality", "items": [1, 7, 9]}}
    assert misaligned_items(ds).tolist() == [1, 4, 7, 9]
    ds.meta = {"misaligned_items": [4, 1], "noise": {"kind": "add", "items": [7]}}  # not a modality copy
    assert misaligned_items(ds).tolist() == [1, 4]


def naive_auc(scores, truth):
    """Every (noisy, clean) pair: 1 when the noisy row scores higher, 1/2 on a tie."""
    pos = [s for s, t in zip(scores, truth) if t]
    neg = [s for s, t in zip(scores, truth) if not t]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_ranking_auc_matches_a_pairwise_loop_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    truth = rng.random(60) < 0.3
    assert ranking_auc(scores, truth) == pytest.approx(naive_auc(scores, truth), abs=1e-12)


def test_ranking_auc_extremes_and_bad_input():
    truth = np.array([True, True, False, False])
    assert ranking_auc(np.array([4.0, 3.0, 2.0, 1.0]), truth) == 1.0
    assert ranking_auc(np.array([1.0, 2.0, 3.0, 4.0]), truth) == 0.0
    assert np.isnan(ranking_auc(np.ones(3), np.zeros(3, dtype=bool)))
    with pytest.raises(ValueError, match="differ in shape"):
        ranking_auc(np.ones(3), truth)
