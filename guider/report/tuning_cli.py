"""`guider report tuning --records R1.json ... --out STEM`: the valid-vs-test selection table
(STEM.md, STEM.tex) from the tuning records of `guider tune select`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", nargs="+", required=True, type=Path, help="tuning records (results/tuning/...)")
    parser.add_argument("--out", required=True, type=Path, help="output stem: writes STEM.md, STEM.tex and STEM.html")


def run(args: argparse.Namespace) -> int:
    from guider.report import render, tuning_table
    from guider.runs.atomic import write_text
    from guider.tuning import read_record

    records = [read_record(path) for path in args.records]
    text = tuning_table.markdown(records)
    write_text(Path(f"{args.out}.md"), text)
    write_text(Path(f"{args.out}.tex"), tuning_table.latex(records))
    write_text(Path(f"{args.out}.html"), render.html_from_markdown(text, "tuning table"))
    print(f"tuning table -> {args.out}.md, {args.out}.tex, {args.out}.html")
    return 0
