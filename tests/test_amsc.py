"""AMSC: confidence, calibrated interaction scores and reclassification, against hand-built
cases and a naive float64 pair loop."""

import numpy as np
import pandas as pd
import pytest
import torch

from guider.methods import amsc as amsc_module
from guider.methods.amsc import (
    AMSC,
    AMSCConfig,
    UserRows,
    cross_modal_confidence,
    fused_unit_features,
    interaction_scores,
    item_neighbours,
    jaccard_rows,
    reclassify,
    standardise_within_user,
)


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def naive_scores(users, items, text, image, conf, a, rec=None):
    """float64 pair loop: s(u,i) = mean_{i' in I_u minus this row} S(i, i')."""
    t, v = unit(text), unit(image)
    s_modal = a * t @ t.T + (1 - a) * v @ v.T
    s_rec = None if rec is None else unit(rec) @ unit(rec).T
    out = np.zeros(len(users))
    for r, (u, i) in enumerate(zip(users, items)):
        others = [j for q, (uu, j) in enumerate(zip(users, items)) if uu == u and q != r]
        if not others:
            continue
        hist = [j for uu, j in zip(users, items) if uu == u]
        if s_rec is None:  # warm-up: S_rec := the user's mean S_modal over pairs
            pairs = [s_modal[x, y] for p, x in enumerate(hist) for q, y in enumerate(hist) if p != q]
            rec_value = {j: np.mean(pairs) for j in others}
        else:
            rec_value = {j: s_rec[i, j] for j in others}
        total = 0.0
        for j in others:
            c = np.sqrt(conf[i] * conf[j])
            total += c * s_modal[i, j] + (1 - c) * rec_value[j]
        out[r] = total / len(others)
    return out


def random_history(seed=0, n_users=6, n_items=15):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        n = 1 + u * 2 if u < 5 else 9
        users += [u] * n
        items += list(rng.choice(n_items, n, replace=False))
    perm = rng.permutation(len(users))  # table order is not grouped by user
    return np.array(users)[perm], np.array(items)[perm], rng


@pytest.mark.parametrize("with_rec", [False, True])
def test_interaction_scores_match_naive_pair_loop(with_rec, monkeypatch):
    monkeypatch.setattr(amsc_module, "_BLOCK_ELEMENTS", 40)  # force many user blocks
    users, items, rng = random_history()
    n_items = 15
    text, image = rng.normal(size=(n_items, 5)), rng.normal(size=(n_items, 7))
    conf = rng.uniform(size=n_items)
    rec = rng.normal(size=(n_items, 4)) if with_rec else None
    rows = UserRows(torch.tensor(users), torch.tensor(items), 6)
    fused = fused_unit_features(torch.tensor(text), torch.tensor(image), 0.3)
    got = interaction_scores(rows, fused, torch.tensor(conf), None if rec is None else torch.tensor(rec))
    expected = naive_scores(users, items, text, image, conf, 0.3, rec)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)


def test_fused_features_give_weighted_cosines():
    rng = np.random.default_rng(1)
    text, image = rng.normal(size=(6, 3)), rng.normal(size=(6, 4))
    fused = fused_unit_features(torch.tensor(text), torch.tensor(image), 0.25).double().numpy()
    expected = 0.25 * unit(text) @ unit(text).T + 0.75 * unit(image) @ unit(image).T
    np.testing.assert_allclose(fused @ fused.T, expected, atol=1e-6)
    only_text = fused_unit_features(torch.tensor(text), None, 0.25).double().numpy()
    np.testing.assert_allclose(only_text @ only_text.T, unit(text) @ unit(text).T, atol=1e-6)
    with pytest.raises(ValueError, match="needs text or image"):
        fused_unit_features(None, None, 0.5)


def test_knn_excludes_self_and_matches_brute_force(monkeypatch):
    import guider.models.graph as graph

    monkeypatch.setattr(graph, "_BLOCK_ELEMENTS", 25)  # 1 row per block for n = 20
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(20, 6))
    got = item_neighbours(torch.tensor(feats), 4).numpy()
    sim = unit(feats) @ unit(feats).T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1)[:, :4]
    assert np.array_equal(np.sort(got, axis=1), np.sort(expected, axis=1))
    with pytest.raises(ValueError, match=r"amsc.knn_k=20 must be in \[1, 19\]"):
        item_neighbours(torch.tensor(feats), 20)


def test_confidence_is_one_when_neighbourhoods_coincide_and_zero_when_disjoint():
    """Items 0-2 form a tight cluster in both modalities (same neighbours: confidence 1);
    item 3 sits next to items 4, 5 in text but next to 6, 7 in vision (confidence 0)."""
    e = np.eye(8)
    text = np.stack(
        [
            e[0],
            e[0] + 0.1 * e[1],
            e[0] + 0.1 * e[2],  # cluster A
            e[3],
            e[3] + 0.1 * e[4],
            e[3] + 0.1 * e[5],  # item 3 with 4, 5
            e[6],
            e[6] + 0.1 * e[7],
        ]
    )  # 6, 7 elsewhere
    image = np.stack(
        [
            e[0],
            e[0] + 0.1 * e[1],
            e[0] + 0.1 * e[2],
            e[6],
            e[4],
            e[4] + 0.1 * e[5],  # item 3 now far from 4, 5 ...
            e[6] + 0.1 * e[7],
            e[6] + 0.1 * e[3],
        ]
    )  # ... and next to 6, 7
    conf = cross_modal_confidence(torch.tensor(text), torch.tensor(image), k=2).numpy()
    assert conf[0] == 1.0 and conf[1] == 1.0 and conf[2] == 1.0
    assert conf[3] == 0.0


def test_jaccard_of_rows():
    a = torch.tensor([[1, 2, 3], [1, 2, 3]])
    b = torch.tensor([[3, 2, 1], [4, 5, 1]])
    assert jaccard_rows(a, b).tolist() == pytest.approx([1.0, 1 / 5])


def test_unrelated_item_in_a_history_is_classified_false():
    """A user bought 6 items of one cluster and 1 item of another: that one is false."""
    rng = np.random.default_rng(3)
    centre_a, centre_b = rng.normal(size=8), rng.normal(size=8)
    feats = np.stack([centre_a + 0.1 * rng.normal(size=8) for _ in range(6)] + [centre_b])
    users = torch.zeros(7, dtype=torch.long)
    items = torch.tensor([3, 0, 6, 1, 2, 4, 5])  # the unrelated item 6 is the third row
    cfg = AMSCConfig(knn_k=2, tau=1.0, max_false_ratio=0.2, min_history=4)
    amsc = AMSC(
        users, items, 1, torch.tensor(feats, dtype=torch.float32), torch.tensor(feats + 0.01, dtype=torch.float32), cfg
    )
    cal = amsc.calibrate()
    assert cal.false_mask.tolist() == [False, False, True, False, False, False, False]
    assert float(cal.weights[2]) < 0.5 < float(cal.weights[0])
    assert torch.allclose(cal.weights, torch.sigmoid(cal.z))


def test_standardise_within_user_uses_population_std():
    rows = UserRows(torch.tensor([0, 1, 0, 1, 0]), torch.tensor([0, 1, 2, 3, 4]), 2)
    scores = torch.tensor([1.0, 5.0, 2.0, 7.0, 3.0], dtype=torch.float64)
    z = standardise_within_user(rows, scores).numpy()
    u0 = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(z[[0, 2, 4]], (u0 - u0.mean()) / (u0.std() + 1e-8))
    np.testing.assert_allclose(z[[1, 3]], [-1.0, 1.0], atol=1e-7)


def test_reclassify_caps_per_user_and_respects_min_history():
    # user 0: 10 rows, 4 below -tau -> capped at floor(0.2 * 10) = 2, the lowest z first
    # user 1: 3 rows (< min_history 4) -> never false; user 2: 5 rows, cap 1
    users = torch.tensor([0] * 10 + [1] * 3 + [2] * 5)
    z = torch.tensor([-3.0, -1.5, -2.0, -1.2, 0, 0, 0, 0, 0, 0, -5, 0, 0, -1.1, -1.1, 0, 0, 0])
    rows = UserRows(users, torch.arange(18), 3)
    mask = reclassify(rows, z, AMSCConfig(tau=1.0, max_false_ratio=0.2, min_history=4)).tolist()
    assert [i for i, m in enumerate(mask) if m] == [0, 2, 13]  # ties: table order


def test_single_row_users_score_zero_and_are_never_false():
    users, items = torch.tensor([0, 1, 1, 1, 1]), torch.tensor([0, 1, 2, 3, 4])
    feats = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    amsc = AMSC(users, items, 2, feats, feats.flip(0), AMSCConfig(knn_k=2, min_history=1, max_false_ratio=1.0))
    cal = amsc.calibrate()
    assert float(cal.scores[0]) == 0.0 and float(cal.z[0]) == 0.0 and not bool(cal.false_mask[0])


def test_one_modality_means_full_confidence():
    feats = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    amsc = AMSC(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]), 1, None, feats, AMSCConfig(knn_k=2))
    assert torch.equal(amsc.confidence, torch.ones(6))


@pytest.mark.parametrize(
    "bad", [{"knn_k": 0}, {"text_weight": 1.5}, {"every": 0}, {"max_false_ratio": -0.1}, {"min_history": 0}]
)
def test_invalid_config_is_rejected(bad):
    key = next(iter(bad))
    with pytest.raises(ValueError, match=rf"amsc\.{key} must be"):
        AMSCConfig.build(bad, "amsc")


def test_teacher_similarity_changes_the_calibration():
    """After warm-up S_rec comes from the teacher: a teacher that places the odd item with
    the others for a low-confidence item rescues it."""
    rng = np.random.default_rng(4)
    text = rng.normal(size=(7, 6))
    image = rng.normal(size=(7, 6))  # unrelated modalities: low confidence everywhere
    users, items = torch.zeros(7, dtype=torch.long), torch.arange(7)
    amsc = AMSC(users, items, 1, torch.tensor(text), torch.tensor(image), AMSCConfig(knn_k=2))
    rec = np.ones((7, 3))
    rec[3] = [-1.0, -1.0, -1.0]  # the teacher says item 3 is unrelated to the rest
    cal = amsc.calibrate(torch.tensor(rec))
    assert int(torch.argmin(cal.z)) == 3


def test_feature_only_sums_are_computed_once_per_confidence(monkeypatch):
    users, items, rng = random_history()
    text, image = torch.tensor(rng.normal(size=(15, 5))), torch.tensor(rng.normal(size=(15, 7)))
    amsc = AMSC(torch.tensor(users), torch.tensor(items), 6, text, image, AMSCConfig(knn_k=3))
    calls = []
    real = amsc_module.calibrated_modal_sums
    monkeypatch.setattr(amsc_module, "calibrated_modal_sums", lambda *a: calls.append(1) or real(*a))
    rec = torch.tensor(rng.normal(size=(15, 4)))
    first, second = amsc.calibrate(rec), amsc.calibrate(rec)
    assert len(calls) == 1 and torch.equal(first.scores, second.scores)
    fresh = interaction_scores(amsc.rows, amsc.fused, amsc.weight, rec)  # no cache involved
    assert torch.equal(first.scores, fresh)
    calls.clear()
    amsc.weight = torch.ones_like(amsc.weight)  # a new confidence weight invalidates the cache
    assert not torch.equal(amsc.calibrate(rec).scores, first.scores) and len(calls) == 1


def test_confidence_rank_is_the_share_of_items_at_or_below_with_mean_ranks_for_ties():
    from scipy.stats import rankdata

    from guider.methods.amsc import confidence_rank

    values = torch.tensor([0.1, 0.3, 0.1, 0.0, 0.3, 0.3, 1.0])
    expected = rankdata(values.numpy(), method="average") / len(values)
    assert torch.allclose(confidence_rank(values), torch.tensor(expected, dtype=values.dtype))
    assert float(confidence_rank(torch.full((5,), 0.2)).unique()) == pytest.approx(0.6)  # all tied: mean rank 3 of 5


@pytest.mark.parametrize("form", ["rank", "raw"])
def test_the_calibration_weight_is_the_rank_by_default_and_s_conf_when_raw(form):
    from guider.methods.amsc import confidence_rank

    users, items, rng = random_history()
    text, image = torch.tensor(rng.normal(size=(15, 5))), torch.tensor(rng.normal(size=(15, 7)))
    amsc = AMSC(torch.tensor(users), torch.tensor(items), 6, text, image, AMSCConfig(knn_k=3, confidence=form))
    expected = confidence_rank(amsc.confidence) if form == "rank" else amsc.confidence
    assert torch.equal(amsc.weight, expected)
    rec = torch.tensor(rng.normal(size=(15, 4)))
    assert torch.equal(amsc.calibrate(rec).scores, interaction_scores(amsc.rows, amsc.fused, expected, rec))
    only_text = AMSC(torch.tensor(users), torch.tensor(items), 6, text, None, AMSCConfig(knn_k=3, confidence=form))
    assert torch.equal(only_text.weight, torch.ones(15, dtype=only_text.weight.dtype))  # nothing to doubt it with


def topic_dataset(seed=0, n_topics=10, per_topic=30, n_users=300, history=12):
    """Items in topics, text and image features = the topic's centre in each space plus
    noise (different dimensions); every user buys `history` items of one topic."""
    from guider.data.format.dataset import Dataset

    rng = np.random.default_rng(seed)
    topic = np.repeat(np.arange(n_topics), per_topic)
    text = rng.normal(size=(n_topics, 24))[topic] + 0.6 * rng.normal(size=(len(topic), 24))
    image = rng.normal(size=(n_topics, 16))[topic] + 0.6 * rng.normal(size=(len(topic), 16))
    users = np.repeat(np.arange(n_users), history)
    items = np.concatenate(
        [rng.choice(np.flatnonzero(topic == u % n_topics), history, replace=False) for u in range(n_users)]
    )
    inter = pd.DataFrame({"userID": users, "itemID": items, "x_label": 0})
    return Dataset(
        "topics", n_users, len(topic), inter, text_feat=text.astype(np.float32), image_feat=image.astype(np.float32)
    )


def detection_lift(ds, weight=None):
    from guider.data.noise.modality import ModalityNoise

    users, items = torch.tensor(ds.inter["userID"].to_numpy()), torch.tensor(ds.inter["itemID"].to_numpy())
    amsc = AMSC(users, items, ds.n_users, torch.as_tensor(ds.text_feat), torch.as_tensor(ds.image_feat), AMSCConfig())
    truth = ModalityNoise.truth(ds, ds.inter["itemID"].to_numpy())
    flagged = amsc.calibrate().false_mask.numpy()
    swapped = np.zeros(ds.n_items, dtype=bool)
    swapped[ds.meta["noise"]["items"]] = True
    return truth[flagged].mean() / truth.mean(), amsc.weight[swapped].mean() / amsc.weight[~swapped].mean()


@pytest.mark.parametrize("modality", ["text", "image"])
def test_one_swapped_modality_is_found_through_the_confidence(modality):
    """The protocol's modality noise (one feature of 20 % of the items from another item):
    the swapped items' modalities disagree, their S_conf rank falls, and AMSC flags their
    interactions well above the random detector's precision (docs/method.md)."""
    from guider.data.noise.modality import corrupt_modality

    noisy = corrupt_modality(topic_dataset(), 0.2, modality, seed=1)
    lift, weight_ratio = detection_lift(noisy)
    assert weight_ratio < 0.6  # the swapped items' confidence rank is far below the others'
    assert lift >= 1.5


def test_both_swapped_modalities_keep_their_confidence():
    """Swapping text and image of the same items leaves them in agreement: S_conf does not
    fall (it is the limit docs/method.md states), so only the content-vs-history term sees them."""
    from guider.data.noise.modality import corrupt_modality

    _, weight_ratio = detection_lift(corrupt_modality(topic_dataset(), 0.2, "both", seed=1))
    assert weight_ratio > 0.9


def test_the_modality_noise_swaps_the_text_feature_by_default():
    from guider.data.noise import make_noisy_copy

    ds = topic_dataset(n_users=20)
    out, _ = make_noisy_copy(ds, "modality", ratio=0.2, seed=0)
    assert out.meta["noise"]["modality"] == "text"
    np.testing.assert_array_equal(out.image_feat, ds.image_feat)
    assert not np.array_equal(out.text_feat, ds.text_feat)
