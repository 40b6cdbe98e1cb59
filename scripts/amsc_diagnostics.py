"""How well AMSC's signals separate the noisy interactions, from one finished GUIDER run.

    python scripts/amsc_diagnostics.py --run RUN_DIR --data DATA_DIR [--knn-k 10,30,100]

The run's teacher (its checkpoint's, i.e. the last epoch's) supplies S_rec. For each
knn_k, AMSC is recalibrated with the run's other AMSC settings, these ways:
- content:      S_rec neutral (the warm-up calibration: content similarity only);
- rank, raw:    the specified mix c S_modal + (1 - c) S_rec with the teacher, the confidence
                weight r from S_conf's rank (the default) or S_conf itself (0.3's form);
- centred:      the rank mix with each similarity's mean over the users' pairs removed first
                (c (S_modal - m_modal) + (1 - c) (S_rec - m_rec)): not the specification,
                shown because the level of S_modal is what lets the confidence decide
                (docs/method.md, "AMSC that lets content decide");
- teacher:      the weight forced to 0, i.e. S = S_rec alone.
For each it prints the false set's precision, recall and lift against the dataset's
`is_noise` labels, and, on a noisy copy, against its noise kind's labels (for `modality`: the
interactions of the swapped items), with the ranking AUC of -z (how well the within-user
scores order noisy rows before clean ones, independent of tau and the cap). Train labels
only: nothing here reads valid or test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from guider.config import rebuild_run_config
from guider.data import load_dataset
from guider.data.format.fingerprint import dataset_fingerprint
from guider.data.noise import NO_NOISE, level_of, noise_kind
from guider.engine.trainer import Trainer
from guider.methods import amsc as amsc_module
from guider.methods.amsc import AMSC, Calibration
from guider.methods.detection import precision_recall_f1, ranking_auc
from guider.runs.checkpoint import CHECKPOINT_NAME, read_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished paper/no_dbpr/kl_kd/no_kd run folder")
    parser.add_argument("--data", type=Path, required=True, help="the dataset it trained on (with is_noise labels)")
    parser.add_argument("--knn-k", default="10", help="comma-separated knn_k values")
    return parser.parse_args(argv)


def load_method(run: Path, ds):
    """The run's GUIDER method with the checkpoint's teacher and calibration."""
    saved = read_checkpoint(run / CHECKPOINT_NAME)  # weights_only: a crafted file is refused, never run
    config = rebuild_run_config(saved["config"])
    if config.data_fingerprint != dataset_fingerprint(ds):
        raise SystemExit(f"{run}: the run trained on other data than {ds.name!r} (data fingerprints differ)")
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(ds, Path(scratch), config, torch.device("cpu"), progress=False)
    method = trainer.method
    if getattr(method, "amsc", None) is None:
        raise SystemExit(f"{run}: method {config.method!r} runs no AMSC")
    method.load_state_dict(saved["method"] if "method" in saved else saved["objective"])
    return method


def report(name: str, calibration, label_sets: dict[str, np.ndarray]) -> str:
    cells = []
    for what, labels in label_sets.items():
        scores = precision_recall_f1(calibration.false_mask.cpu().numpy(), labels)
        auc = ranking_auc(-calibration.z.cpu().numpy(), labels)
        cells.append(
            f"{what}: precision {scores['precision']:.3f} recall {scores['recall']:.3f} "
            f"lift {scores['lift']:.2f} AUC(-z) {auc:.3f}"
        )
    false_share = float(calibration.false_mask.float().mean())
    return f"{name:11s} false {false_share:6.1%}  " + "  |  ".join(cells)


def label_sets(ds, train_items: np.ndarray) -> dict[str, np.ndarray]:
    """{"injected": is_noise of the train rows, "<kind>": the noisy copy's kind's labels}."""
    sets = {}
    if ds.train_noise_labels is not None:
        sets["injected"] = ds.train_noise_labels
    _, kind, _ = level_of(ds.meta)
    if kind != NO_NOISE:
        truth = noise_kind(kind).truth(ds, train_items)
        if truth is not None and kind != "add":  # add's labels are is_noise itself
            sets[kind] = np.asarray(truth, dtype=bool)
    return sets


def centred(amsc: AMSC, teacher_items: torch.Tensor) -> Calibration:
    """The rank mix after removing each similarity's mean over the users' pairs: since
    sum over i' of c(i, i') = q_i (sum_u q - q_i), the shift is computable per row."""
    rows, fused = amsc.rows, amsc.fused
    ones = torch.ones(len(rows.items), dtype=fused.dtype)
    unit = torch.nn.functional.normalize(teacher_items.detach().to(fused.dtype), dim=-1)
    others = (rows.counts[rows.users].to(fused.dtype) - 1).clamp_min(1)
    modal = (rows.dot_with_user_sum(fused, ones, ones) - (fused**2).sum(-1)[rows.items]) / others
    rec = (rows.dot_with_user_sum(unit, ones, ones) - (unit**2).sum(-1)[rows.items]) / others
    q = amsc.weight.to(fused.dtype).sqrt()[rows.items]
    c_mean = q * (rows.sum_per_user(q)[rows.users] - q) / others
    scores = amsc.calibrate(teacher_items).scores - (c_mean * modal.mean() + (1 - c_mean) * rec.mean())
    z = amsc_module.standardise_within_user(rows, scores)
    return Calibration(amsc_module.reclassify(rows, z, amsc.config), torch.sigmoid(z), z, scores)


def main(argv=None) -> int:
    args = parse_args(argv)
    ds = load_dataset(args.data)
    objective = load_method(args.run, ds)
    sets = label_sets(ds, np.asarray(objective.train_items))
    if not sets:
        raise SystemExit(f"{args.data}: no is_noise labels and no noise kind to score against")
    teacher_items = objective.teacher.model.item_embeddings(objective.teacher.embeddings())
    shares = ", ".join(f"{what} {labels.mean():.3f}" for what, labels in sets.items())
    print(f"run {args.run} (calibrated at epoch {objective.calibrated_epoch}); labelled share: {shares}")
    for knn_k in (int(k) for k in args.knn_k.split(",")):
        amsc = AMSC(
            objective.train_users,
            objective.train_items,
            ds.n_users,
            objective.inputs.text_feat,
            objective.inputs.image_feat,
            replace(objective.amsc_config, knn_k=knn_k, confidence="rank"),
        )
        print(f"knn_k {knn_k}: mean S_conf {float(amsc.confidence.mean()):.3f}")
        print("  " + report("content", amsc.calibrate(None), sets))
        print("  " + report("rank", amsc.calibrate(teacher_items), sets))
        print("  " + report("centred", centred(amsc, teacher_items), sets))
        amsc.weight = amsc.confidence  # the raw form: c from S_conf itself
        print("  " + report("raw", amsc.calibrate(teacher_items), sets))
        amsc.weight = torch.zeros_like(amsc.confidence)
        print("  " + report("teacher", amsc.calibrate(teacher_items), sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
