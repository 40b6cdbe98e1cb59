"""`guider train`: train one backbone with one training method and evaluate it.

The method is one registered name (`--method`, default `none` = the plain backbone);
`--variant` and `--denoise` are its deprecated aliases from 0.1 and go away in the next
release.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("guider")

INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from guider.objective import available_objectives

    methods = ", ".join(available_objectives())
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (MMRec-compatible)")
    parser.add_argument("--backbone", required=True, help="registered backbone name, e.g. lightgcn")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--method", help=f"training method (default none = the plain backbone): {methods}")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # deprecated alias of --method (GUIDER variants)
    parser.add_argument("--denoise", help=argparse.SUPPRESS)  # deprecated alias of --method (T-CE, R-CE)
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
    """--method, or the method the deprecated --variant/--denoise pair names."""
    legacy = [v for v in (args.variant, args.denoise) if v not in (None, "none")]
    if args.variant is not None or args.denoise is not None:
        log.warning("--variant and --denoise are deprecated; use --method NAME (they go away in the next release)")
    if len(legacy) > 1:
        raise ValueError(f"--variant {args.variant} and --denoise {args.denoise} name two methods; use one --method")
    implied = legacy[0] if legacy else None
    if args.method is not None and implied is not None and implied != args.method:
        raise ValueError(f"--method {args.method} contradicts the deprecated --variant/--denoise {implied}")
    return args.method or implied or "none"


def tuned_sets(record: Path | None, backbone: str, method: str) -> list[str]:
    """The `--set` pairs of a tuning record's chosen point ([] without --tuned), checked to be
    a record of this backbone and method."""
    if record is None:
        return []
    from guider.tuning import tuned_sets as read_sets

    return read_sets(record, backbone, method)


def run(args: argparse.Namespace) -> int:
    from guider.train import train

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
            progress=not args.no_progress,
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
    summary = {k: metrics[k] for k in ("dataset", "backbone", "method", "seed", "best_epoch", "epochs_run")}
    summary["test"] = {k: round(v, 4) for k, v in metrics["test"].items() if k.endswith("@20")}
    print(json.dumps(summary))
    return 0
