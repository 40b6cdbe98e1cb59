"""Artefacts every GUIDER-style run writes next to the student's metrics:
teacher_metrics.json (the teacher's valid/test metrics), amsc.npz (the false mask and
weights over the train rows) and denoise.json (detection quality against ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from guider.data.format.dataset import Dataset
from guider.data.noise import NO_NOISE, level_of, noise_kind
from guider.methods.amsc import Calibration
from guider.methods.base import Evaluator
from guider.methods.detection import precision_recall_f1
from guider.models.base import ModelInputs
from guider.runs.atomic import atomic_path, write_json


def teacher_report(teacher, evaluate: Evaluator, run_dir: Path) -> dict[str, Any]:
    """Evaluate the teacher on valid and test; write teacher_metrics.json; return the dict."""
    emb = teacher.embeddings()
    score = lambda users: teacher.model.scores(emb, users)  # noqa: E731
    metrics = {"backbone": teacher.model.name, "valid": evaluate(score, "valid"), "test": evaluate(score, "test")}
    write_json(run_dir / "teacher_metrics.json", metrics)
    return metrics


def save_amsc(
    path: Path,
    inputs: ModelInputs,
    cal: Calibration,
    confidence: torch.Tensor | None,
    epoch: int,
    weight: torch.Tensor | None = None,
) -> None:
    """amsc.npz: per train row (table order) user, item, false mask, weight w, z, score s;
    per item the cross-modal confidence S_conf and the calibration weight r (its rank, or
    S_conf itself with amsc.confidence raw) when computed; the epoch of the calibration."""
    arrays = {
        "users": np.asarray(inputs.train_users, dtype=np.int64),
        "items": np.asarray(inputs.train_items, dtype=np.int64),
        "false_mask": cal.false_mask.cpu().numpy().astype(bool),
        "weights": cal.weights.detach().cpu().numpy().astype(np.float32),
        "z": cal.z.detach().cpu().numpy().astype(np.float32),
        "scores": cal.scores.detach().cpu().numpy().astype(np.float32),
        "calibrated_epoch": np.asarray(epoch, dtype=np.int64),
    }
    if confidence is not None:
        arrays["item_confidence"] = confidence.detach().cpu().numpy().astype(np.float32)
    if weight is not None:
        arrays["item_weight"] = weight.detach().cpu().numpy().astype(np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def misaligned_items(dataset: Dataset) -> np.ndarray | None:
    """Items with misaligned modal content, or None when the dataset records none: the
    synthetic generator's meta['misaligned_items'] and, in a `modality` noisy copy, the
    swapped items of meta['noise'] (noise.corrupt_modality), united."""
    meta = dataset.meta or {}
    noise = meta.get("noise") or {}
    lists = [meta["misaligned_items"]] if meta.get("misaligned_items") is not None else []
    lists += [noise.get("items", [])] if noise.get("kind") == "modality" else []
    if not lists:
        return None
    return np.unique(np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1) for x in lists]))


def detection_report(
    path: Path,
    dataset: Dataset,
    inputs: ModelInputs,
    false_mask: torch.Tensor,
    confidence: torch.Tensor | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """denoise.json: the false set scored against `is_noise`, against the interactions with
    misaligned items, and against the labels of the copy's noise kind (`noise_kind`), where
    the dataset records them (null otherwise)."""
    predicted = false_mask.cpu().numpy().astype(bool)
    report: dict[str, Any] = {
        **extra,
        "train_rows": int(len(predicted)),
        "false_rows": int(predicted.sum()),
        "false_ratio": float(predicted.mean()) if len(predicted) else 0.0,
    }
    labels = dataset.train_noise_labels
    if labels is not None and len(labels) != len(predicted):
        raise ValueError(f"{dataset.name}: {len(labels)} is_noise labels for {len(predicted)} train rows")
    report["injected_noise"] = None if labels is None else precision_recall_f1(predicted, labels)
    report["misaligned_items"] = _misaligned_report(dataset, inputs, predicted, confidence)
    report["noise_kind"] = _kind_report(dataset, inputs, predicted, labels)
    write_json(path, report)
    return report


def _kind_report(dataset, inputs, predicted: np.ndarray, labels: np.ndarray | None) -> dict[str, Any] | None:
    """The false set against the labels of the noise kind that made this copy (dataset.json
    `noise.kind`, guider data noise; the kind's `truth`: the labelled rows for add and
    natural, the interactions of the swapped items for modality); None for a kind that labels
    nothing (delete) and for data that is not a noisy copy."""
    _, kind, _ = level_of(dataset.meta)
    if kind == NO_NOISE:
        return None
    truth = noise_kind(kind).truth(dataset, np.asarray(inputs.train_items))
    if truth is None:
        return None
    return {"kind": kind, **precision_recall_f1(predicted, truth)}


def _misaligned_report(dataset, inputs, predicted, confidence) -> dict[str, Any] | None:
    items = misaligned_items(dataset)
    if items is None:
        return None
    flagged = np.zeros(inputs.n_items, dtype=bool)
    flagged[items] = True
    report = {
        "n_items": int(len(items)),
        "interactions": precision_recall_f1(predicted, flagged[np.asarray(inputs.train_items)]),
    }
    if confidence is not None:
        conf = confidence.detach().cpu().numpy()
        report["mean_confidence_misaligned"] = float(conf[flagged].mean()) if flagged.any() else None
        report["mean_confidence_other"] = float(conf[~flagged].mean()) if (~flagged).any() else None
    return report
