"""How well AMSC's signals separate injected noise, from one finished GUIDER run.

    python scripts/amsc_diagnostics.py --run RUN_DIR --data DATA_DIR [--knn-k 10,30,100]

The run's teacher (its checkpoint's, i.e. the last epoch's) supplies S_rec. For each
knn_k, AMSC is recalibrated three ways, all with the run's other AMSC settings:
- content:    S_rec neutral (the warm-up calibration: content similarity only);
- calibrated: the specified mix c S_modal + (1 - c) S_rec with the teacher;
- teacher:    S_conf forced to 0, i.e. S = S_rec alone.
For each it prints the false set's precision, recall and lift against the dataset's
`is_noise` labels and the ranking AUC of -z (how well the within-user scores order noisy
rows before clean ones, independent of tau and the cap). Train labels only: nothing here
reads valid or test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from guider.config import rebuild_run_config
from guider.data import load_dataset
from guider.data.format.fingerprint import dataset_fingerprint
from guider.engine.trainer import Trainer
from guider.methods.amsc import AMSC
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


def report(name: str, calibration, labels) -> str:
    scores = precision_recall_f1(calibration.false_mask.cpu().numpy(), labels)
    auc = ranking_auc(-calibration.z.cpu().numpy(), labels)
    return (
        f"{name:11s} false {scores['predicted'] / scores['total']:6.1%}  precision {scores['precision']:.3f}  "
        f"recall {scores['recall']:.3f}  lift {scores['lift']:.2f}  AUC(-z) {auc:.3f}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    ds = load_dataset(args.data)
    labels = ds.train_noise_labels
    if labels is None:
        raise SystemExit(f"{args.data}: no is_noise labels to score against")
    objective = load_method(args.run, ds)
    teacher_items = objective.teacher.model.item_embeddings(objective.teacher.embeddings())
    print(
        f"run {args.run} (calibrated at epoch {objective.calibrated_epoch}); injected share "
        f"{labels.mean():.3f}: lift 2 needs precision {2 * labels.mean():.3f}"
    )
    for knn_k in (int(k) for k in args.knn_k.split(",")):
        amsc = AMSC(
            objective.train_users,
            objective.train_items,
            ds.n_users,
            objective.inputs.text_feat,
            objective.inputs.image_feat,
            replace(objective.amsc_config, knn_k=knn_k),
        )
        print(f"knn_k {knn_k}: mean S_conf {float(amsc.confidence.mean()):.3f}")
        print("  " + report("content", amsc.calibrate(None), labels))
        print("  " + report("calibrated", amsc.calibrate(teacher_items), labels))
        amsc.confidence = torch.zeros_like(amsc.confidence)
        print("  " + report("teacher", amsc.calibrate(teacher_items), labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
