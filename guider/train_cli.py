"""`guider train`: train one backbone (optionally with a denoising plug-in) and evaluate it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (MMRec-compatible)")
    parser.add_argument("--backbone", required=True, help="registered backbone name, e.g. lightgcn")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument(
        "--variant", default="none", help="GUIDER variant: none|paper|no_amsc|no_dbpr|kl_kd|no_kd|as_released"
    )
    parser.add_argument("--denoise", default="none", help="denoising baseline: none|tce|rce")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 1000)")
    parser.add_argument("--patience", type=int, help="evaluations without improvement before stopping (default 20)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--config", type=Path, help="YAML run config with sections model/train/<plug-in>")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.lr=0.0005 --set model.n_layers=2",
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from guider.train import train

    metrics = train(
        args.data,
        args.out,
        args.backbone,
        variant=args.variant,
        denoise=args.denoise,
        seed=args.seed,
        device=args.device,
        config_file=args.config,
        sets=args.sets,
        epochs=args.epochs,
        patience=args.patience,
        resume=args.resume,
        progress=not args.no_progress,
    )
    summary = {k: metrics[k] for k in ("dataset", "backbone", "variant", "seed", "best_epoch", "epochs_run")}
    summary["test"] = {k: round(v, 4) for k, v in metrics["test"].items() if k.endswith("@20")}
    print(json.dumps(summary))
    return 0
