"""`guider train`: train one backbone with one training method and evaluate it.

The method is one registered name (`--method`, default `none` = the plain backbone); the
0.1 options `--variant` and `--denoise` were removed in 0.4 (an error names `--method`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("guider")

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from guider.methods import available_methods

    methods = ", ".join(available_methods())
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (MMRec-compatible)")
    parser.add_argument("--backbone", required=True, help="registered backbone name, e.g. lightgcn")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--method", help=f"training method (default none = the plain backbone): {methods}")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # removed in 0.4: an error naming --method
    parser.add_argument("--denoise", help=argparse.SUPPRESS)  # removed in 0.4: an error naming --method
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="maximum epochs (default 1000)")
    parser.add_argument("--patience", type=int, help="evaluations without improvement before stopping (default 20)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    parser.add_argument("--config", type=Path, help="YAML run config with sections model/train/<method's sections>")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.lr=0.0005 --set model.n_layers=2",
    )
    parser.add_argument(
        "--tuned",
        type=Path,
        metavar="RECORD",
        help="train the chosen point of a tuning record (results/tuning/<dataset>/<backbone>/<method>.json, "
        "guider tune select); its settings apply after every --set",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        choices=["auto", "strict"],
        help="continue from RUN_DIR/checkpoint.pt; a checkpoint of another config or other data starts "
        "afresh (auto, the default of --resume) or is an error (--resume=strict)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def method_of(args: argparse.Namespace) -> str:
    """--method (default none); the 0.1 options --variant and --denoise are gone since 0.4."""
    for option in ("variant", "denoise"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option} was removed in 0.4; name the training method with --method NAME")
    return args.method or "none"


def tuned_sets(record: Path | None, backbone: str, method: str) -> list[str]:
    """The `--set` pairs of a tuning record's chosen point ([] without --tuned), checked to be
    a record of this backbone and method."""
    if record is None:
        return []
    from guider.tuning import tuned_sets as read_sets

    return read_sets(record, backbone, method)


def run(args: argparse.Namespace) -> int:
    from guider.engine.trainer import train

    method = method_of(args)
    try:
        metrics = train(
            args.data,
            args.out,
            args.backbone,
            method=method,
            seed=args.seed,
            device=args.device,
            config_file=args.config,
            sets=[*args.sets, *tuned_sets(args.tuned, args.backbone, method)],
            epochs=args.epochs,
            patience=args.patience,
            resume=args.resume,
            progress=not args.no_progress and sys.stderr.isatty(),  # a bar only on a terminal
        )
    except KeyboardInterrupt:
        if (args.out / "checkpoint.pt").exists():
            log.error(
                "interrupted; %s keeps its last finished epoch: run the same command with --resume to continue",
                args.out,
            )
        else:
            log.error(
                "interrupted before the first epoch finished; %s has no checkpoint: start the run again", args.out
            )
        return INTERRUPTED
    from guider.engine.feedback import end_line

    print(end_line(str(args.out), metrics))
    return 0
