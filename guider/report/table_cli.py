"""`guider report table main|ablation|baselines|robustness`: runs.csv -> Markdown and LaTeX tables."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_METRICS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        choices=["main", "ablation", "baselines", "robustness"],
        help="main: plain vs GUIDER with significance; ablation: every method that was run; "
        "baselines: plain / +T-CE / +R-CE / +DA-MRS / +GUIDER per backbone; robustness: the "
        "noise study's metric and relative drop per noise kind and ratio (first of --metrics)",
    )
    parser.add_argument("--runs", required=True, type=Path, help="runs.csv from `guider report collect`")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output stem: writes STEM.md, STEM.tex and STEM.html (main also STEM_significance.csv)",
    )
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS, help="table columns per dataset")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument(
        "--treatment", default="paper", help="method compared against --baseline (main and baselines tables)"
    )
    parser.add_argument("--baseline", default="none", help="reference method (main and baselines tables)")
    parser.add_argument(
        "--note", help="a sentence added under the table (e.g. that demo numbers illustrate the pipeline)"
    )


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from guider.report import render, tables
    from guider.report.collect_cli import write_csv
    from guider.runs.atomic import write_text

    runs = pd.read_csv(args.runs)
    if args.kind == "main":
        table, tests = tables.main_table(
            runs, args.metrics, treatment=args.treatment, baseline=args.baseline, alpha=args.alpha
        )
        write_csv(tests, Path(f"{args.out}_significance.csv"))
    elif args.kind == "baselines":
        table = tables.baselines_table(runs, args.metrics, treatment=args.treatment, baseline=args.baseline)
    elif args.kind == "robustness":
        table = tables.robustness_table(runs, args.metrics[0])
    else:
        table = tables.ablation_table(runs, args.metrics)
    if args.note:
        table.notes.append(args.note)
    text = render.markdown(table)
    write_text(Path(f"{args.out}.md"), text)
    write_text(Path(f"{args.out}.tex"), render.latex(table, label=f"tab:{args.kind}"))
    write_text(Path(f"{args.out}.html"), render.html_from_markdown(text, f"{args.kind} table"))
    print(f"{args.kind} table -> {args.out}.md, {args.out}.tex, {args.out}.html")
    return 0
