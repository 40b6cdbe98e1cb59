"""`guider report summary`: runs.csv -> metrics.json (for `dvc metrics`) and the noise curve CSV."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, type=Path, help="runs.csv from `guider report collect`")
    parser.add_argument("--metrics-out", type=Path, help="JSON of mean test metrics on the base data")
    parser.add_argument("--noise-out", type=Path, help="CSV of the metric vs injected-noise ratio")
    parser.add_argument("--metrics", nargs="+", default=["recall@20", "ndcg@20"], help="metrics in the JSON")
    parser.add_argument("--metric", default="recall@20", help="metric of the noise curve")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from guider.report.collect_cli import write_csv
    from guider.report.summary import headline_metrics, noise_curve
    from guider.runs.atomic import write_json

    if args.metrics_out is None and args.noise_out is None:
        raise ValueError("nothing to write: give --metrics-out and/or --noise-out")
    runs = pd.read_csv(args.runs)
    if args.metrics_out is not None:
        write_json(args.metrics_out, headline_metrics(runs, args.metrics))
    if args.noise_out is not None:
        curve = noise_curve(runs, args.metric)
        if curve.empty:  # a study without noisy copies: the header only (a file every study has, for DVC)
            log.info("%s: no runs on noisy copies; %s holds the header only", args.runs, args.noise_out)
        write_csv(curve, args.noise_out)
    return 0
