"""`guider report figure KIND`: runs.csv (and training curves) -> KIND.pdf and KIND.png."""

from __future__ import annotations

import argparse
from pathlib import Path

KINDS = ("comparison", "noise", "ablation", "curves", "detection")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        choices=KINDS,
        help="comparison: plain vs GUIDER bars; noise: metric vs the ratio of one noise kind "
        "(--noise-kind); ablation: bars per method; curves: validation metric per epoch; detection: "
        "AMSC precision/recall vs each noise kind's labels",
    )
    parser.add_argument("--runs", required=True, type=Path, help="runs.csv from `guider report collect`")
    parser.add_argument("--curves", type=Path, help="training curves CSV (kind 'curves')")
    parser.add_argument("--metric", default="recall@20", help="metric to plot")
    from guider.data.noise.base import noise_kinds

    parser.add_argument(  # the registry's kinds, plug-ins' included (loaded before the parsers)
        "--noise-kind", default="add", choices=noise_kinds(), help="noise kind of the 'noise' figure"
    )
    parser.add_argument("--out", required=True, type=Path, help="output stem: writes STEM.pdf and STEM.png")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from guider.report import figures

    runs = pd.read_csv(args.runs)
    if args.kind == "curves":
        if args.curves is None:
            raise ValueError("figure 'curves' needs --curves (the CSV from `guider report collect --curves`)")
        fig = figures.training_curves(pd.read_csv(args.curves), args.metric)
    else:
        draw = {
            "comparison": figures.comparison_bars,
            "noise": lambda r, m: figures.noise_curves(r, m, args.noise_kind),
            "ablation": figures.ablation_bars,
            "detection": lambda r, _m: figures.detection_quality(r),
        }[args.kind]
        fig = draw(runs, args.metric)
    paths = figures.save_figure(fig, args.out)
    print(" ".join(str(p) for p in paths))
    return 0
