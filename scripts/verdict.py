"""The verdict tables of docs/method.md and the README, from the results of config/verdict.yaml
(and of config/amsc_raw.yaml for AMSC's before/after):

    snakemake --cores all --configfile config/verdict.yaml --directory results/verdict
    snakemake --cores all --configfile config/amsc_raw.yaml --directory results/amsc_raw
    python scripts/verdict.py --results results/verdict/results --raw results/amsc_raw/results

Prints Markdown: (1) per backbone, plain vs GUIDER on test Recall@20 and NDCG@20 with the
paired t-test over seeds and the per-user Wilcoxon test (Holm over the main table's
comparisons, from main_significance.csv), the direction, GUIDER's teacher and AMSC's lift;
(2) the solver and the baselines beside them on four backbones; (3) the relative drops under
more noise; (4) AMSC's detection with the rank and the raw confidence weight; (5) the README's
short table.

`--write FILE...` puts each table between the FILE's `<!-- verdict:NAME -->` and
`<!-- /verdict:NAME -->` lines (NAME: main, beside, noise, detect, readme); `--check FILE...`
exits 1 naming every block that differs. docs/verdict/ keeps the run's two summary files (and
the raw-weight run's) so that tests/test_docs.py checks the docs against them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guider.data.noise import parse_level  # noqa: E402
from guider.report import headline, labels  # noqa: E402
from guider.report.tables import direction  # noqa: E402

METRICS = ("recall@20", "ndcg@20")
LABELS = {  # what each data folder's detection labels mark
    "none": "the generator's injected",
    "add": "injected + the copy's added",
    "modality": "those of text-swapped items",
}
BESIDE = ("none", "paper", "truncated_ot", "kl_kd", "tce", "rce", "damrs_plugin")


def mean_std(values: pd.Series) -> str:
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values.mean():.4f}"


def main_rows(runs: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    base = runs[runs["data"] == "base"]
    header = ["backbone", "plain R@20", "+GUIDER R@20", "change", "p seeds / users", "plain N@20", "+GUIDER N@20",
              "change", "p seeds / users", "direction (R / N)", "teacher R@20", "AMSC lift"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 2) + "---:|"]
    for backbone in labels.backbone_order(base["backbone"]):
        sel = base[base["backbone"] == backbone]
        plain, guided = sel[sel["method"] == "none"], sel[sel["method"] == "paper"]
        if plain.empty or guided.empty:
            continue
        cells, verdicts = [labels.backbone_name(backbone)], []
        for metric in METRICS:
            p, g = plain[f"test.{metric}"], guided[f"test.{metric}"]
            test = tests[(tests["backbone"] == backbone) & (tests["metric"] == metric)].iloc[0]
            cells += [mean_std(p), mean_std(g), f"{g.mean() / p.mean() - 1:+.1%}",
                      f"{_p(test['p_seeds_holm'])} / {_p(test['p_users_holm'])}"]  # fmt: skip
            verdicts.append(direction(test, 0.05))
        cells.append(" / ".join(verdicts))
        teacher = guided.get("teacher.test.recall@20", pd.Series(dtype=float))
        lift = guided.get("detect.injected_noise.lift", pd.Series(dtype=float))
        cells += [f"{teacher.mean():.4f}" if len(teacher) else "n/a", f"{lift.mean():.2f}x" if len(lift) else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def beside_rows(runs: pd.DataFrame) -> list[str]:
    base = runs[runs["data"] == "base"]
    ablated = sorted(set(base.loc[base["method"] == "kl_kd", "backbone"]))
    methods = [m for m in BESIDE if m in set(base["method"])]
    lines = ["| backbone | " + " | ".join(labels.display_name(m) for m in methods) + " |",
             "|---|" + "---:|" * len(methods)]  # fmt: skip
    for backbone in labels.backbone_order(ablated):
        sel = base[base["backbone"] == backbone]
        cells = [mean_std(sel.loc[sel["method"] == m, "test.recall@20"]) if (sel["method"] == m).any() else "–"
                 for m in methods]  # fmt: skip
        lines.append(f"| {labels.backbone_name(backbone)} | " + " | ".join(cells) + " |")
    return lines


def robustness_rows(runs: pd.DataFrame) -> list[str]:
    noisy = runs[runs["data"] != "base"]
    levels = sorted(set(noisy["data"]), key=parse_level)
    lines = ["| backbone | method | clean | " + " | ".join(levels) + " |", "|---|---|" + "---:|" * (len(levels) + 1)]
    for backbone in labels.backbone_order(noisy["backbone"]):
        for method in labels.method_order(noisy.loc[noisy["backbone"] == backbone, "method"]):
            sel = runs[(runs["backbone"] == backbone) & (runs["method"] == method)]
            clean = sel.loc[sel["data"] == "base", "test.recall@20"].mean()
            cells = [f"{clean:.4f}"]
            for level in levels:
                at = sel.loc[sel["data"] == level, "test.recall@20"].mean()
                cells.append(f"{at:.4f} ({at / clean - 1:+.1%})")
            name = f"{labels.backbone_name(backbone)} | {labels.display_name(method)}"
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def detection_rows(rank: pd.DataFrame, raw: pd.DataFrame | None) -> list[str]:
    lines = [
        "| data | labels | weight | precision | recall | random precision | lift |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name, runs in (("rank (0.4)", rank), ("raw (0.3)", raw)):
        if runs is None:
            continue
        guided = runs[(runs["method"] == "paper") & (runs["backbone"] == "lightgcn")]
        for data in ("base", "add0.2", "modality0.2"):
            at = guided[guided["data"] == data]
            prefix = "detect.injected_noise" if data == "base" else "detect.noise_kind"
            if at.empty or f"{prefix}.precision" not in at.columns:
                continue
            what = LABELS[parse_level(data)[0]]
            precision, recall = at[f"{prefix}.precision"], at[f"{prefix}.recall"]
            base_rate = at[f"{prefix}.base_rate"]
            lines.append(f"| {data} | {what} | {name} | {mean_std(precision)} | {mean_std(recall)} | "
                         f"{base_rate.mean():.4f} | {(precision / base_rate).mean():.2f}x |")  # fmt: skip
    return lines


def _p(value: float) -> str:
    return "n/a" if value != value else (f"{value:.2g}" if value >= 0.001 else "<0.001")


def readme_rows(runs: pd.DataFrame, tests: pd.DataFrame) -> list[str]:
    """The README's table: the report headline's rows (test Recall@20, plain vs GUIDER, the verdict)."""
    lines = ["| backbone | plain | + GUIDER | change | verdict |", "|---|---:|---:|---:|---|"]
    for row in headline.headline_rows(runs, tests, "recall@20", 0.05).itertuples():
        verdict = headline.VERDICTS[row.verdict]
        verdict = f"**{verdict}**" if row.verdict == "loss" else verdict
        lines.append(f"| {row.backbone} | {row.plain:.4f} | {row.guider:.4f} | {row.change:+.1%} | {verdict} |")
    return lines


def blocks(results: Path, raw: Path | None) -> dict[str, tuple[str, list[str]]]:
    """Every table by block name: (title, Markdown lines)."""
    runs = pd.read_csv(results / "summary" / "runs.csv")
    tests = pd.read_csv(results / "tables" / "main_significance.csv")
    labels.learn(runs)
    raw_runs = pd.read_csv(raw / "summary" / "runs.csv") if raw else None
    return {
        "main": ("GUIDER vs plain, every backbone", main_rows(runs, tests)),
        "beside": ("Beside them (test R@20)", beside_rows(runs)),
        "noise": ("More noise (test R@20, relative change from the clean data)", robustness_rows(runs)),
        "detect": ("AMSC's detection (LightGCN runs)", detection_rows(runs, raw_runs)),
        "readme": ("The README's table (test R@20)", readme_rows(runs, tests)),
    }


def fill(text: str, tables: dict[str, tuple[str, list[str]]]) -> tuple[str, list[str]]:
    """`text` with every `<!-- verdict:NAME -->` block replaced by its table, and the names of
    the blocks whose content changed."""
    changed = []

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in tables:
            raise SystemExit(f"unknown verdict block {name!r} (known: {', '.join(tables)})")
        body = "\n".join(tables[name][1])
        if match.group(2).strip() != body:
            changed.append(name)
        return f"<!-- verdict:{name} -->\n{body}\n<!-- /verdict:{name} -->"

    pattern = re.compile(r"<!-- verdict:(\w+) -->\n(.*?)<!-- /verdict:\1 -->", re.S)
    return pattern.sub(replace, text), changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="the verdict run's results/ folder")
    parser.add_argument("--raw", type=Path, help="config/amsc_raw.yaml's results/ folder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", type=Path, nargs="+", metavar="FILE", help="fill the FILEs' verdict blocks")
    mode.add_argument("--check", type=Path, nargs="+", metavar="FILE", help="exit 1 if a verdict block differs")
    args = parser.parse_args(argv)
    tables = blocks(args.results, args.raw)
    if not (args.write or args.check):
        for title, lines in tables.values():
            print(f"### {title}\n\n" + "\n".join(lines) + "\n")
        return 0
    stale = []
    for path in args.write or args.check:
        text, changed = fill(path.read_text(), tables)
        stale += [f"{path}: {name}" for name in changed]
        if args.write and changed:
            path.write_text(text)
    if args.check and stale:
        print("verdict blocks that differ from the results (run with --write):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
