"""`guider report collect`: finished runs -> results/summary/runs.csv (+ training curves)."""

from __future__ import annotations

import argparse
from pathlib import Path

from guider.runs.atomic import atomic_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        type=Path,
        help="metrics.json of every run, laid out as .../<dataset>/<data>/<backbone>/<method>/seed<k>/",
    )
    parser.add_argument("--out", required=True, type=Path, help="runs.csv to write (one row per run)")
    parser.add_argument("--curves", type=Path, help="also write the per-epoch log of every run to this CSV")


def run(args: argparse.Namespace) -> int:
    from guider.report.runs import collect_curves, collect_runs

    runs = collect_runs(args.metrics)
    write_csv(runs, args.out)
    if args.curves is not None:
        write_csv(collect_curves(runs), args.curves)
    print(f"{len(runs)} runs -> {args.out}")
    return 0


def write_csv(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.8g")
