"""`guider report headline --runs runs.csv --tests main_significance.csv --out STEM`: the report's
first page (STEM.rst) and the README's verdict table (STEM.md): per dataset and backbone,
GUIDER vs plain with the direction and significance (guider.report.headline)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", required=True, type=Path, help="runs.csv from `guider report collect`")
    parser.add_argument("--tests", required=True, type=Path, help="main_significance.csv of `report table main`")
    parser.add_argument("--out", required=True, type=Path, help="output stem: writes STEM.rst and STEM.md")
    parser.add_argument("--metric", default="recall@20", help="the metric of the headline (default recall@20)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument("--note", help="a sentence shown under the headline")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from guider.report import headline
    from guider.runs.atomic import write_text

    runs, tests = pd.read_csv(args.runs), pd.read_csv(args.tests)
    rows = headline.headline_rows(runs, tests, args.metric, args.alpha)
    n_seeds = int(tests.loc[tests["metric"] == args.metric, "n_seeds"].max())
    sentence = headline.summary_sentence(rows, args.metric, args.alpha, n_seeds)
    write_text(Path(f"{args.out}.rst"), headline.rst(rows, sentence, args.note))
    write_text(Path(f"{args.out}.md"), headline.markdown(rows, sentence))
    print(sentence)
    return 0
