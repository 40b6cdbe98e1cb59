"""Quality of a noise detector: precision, recall and F1 of a predicted set against labels."""

from __future__ import annotations

from typing import Any

import numpy as np


def precision_recall_f1(predicted: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 of boolean `predicted` against boolean `truth` (same length).

    Also returns the counts and the base rate of `truth`, so "precision is k x the injected
    rate" can be read off directly (`lift` = precision / base rate).
    """
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} differ in shape")
    tp = int(np.sum(predicted & truth))
    n_pred, n_true = int(predicted.sum()), int(truth.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    base_rate = n_true / len(truth) if len(truth) else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "true_positives": tp,
        "predicted": n_pred,
        "positives": n_true,
        "total": int(len(truth)),
        "base_rate": base_rate,
        "lift": precision / base_rate if base_rate > 0 else None,
    }


def ranking_auc(suspicion: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of `suspicion` (higher = more likely noise) against boolean
    `truth`: the probability that a random noisy row outranks a random clean one, ties
    counting one half (Mann-Whitney U with average ranks). NaN when one class is empty."""
    from scipy.stats import rankdata

    suspicion, truth = np.asarray(suspicion, dtype=np.float64), np.asarray(truth, dtype=bool)
    if suspicion.shape != truth.shape:
        raise ValueError(f"suspicion {suspicion.shape} and truth {truth.shape} differ in shape")
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(suspicion, method="average")
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
