"""The report's first page: did GUIDER help, where, and how sure.

From runs.csv and the main table's significance tests (main_significance.csv): per dataset
and backbone, the plain and GUIDER means of one metric, the relative change, GUIDER's
teacher on the same metric, AMSC's lift over a random detector on the data's noise labels
(where the data has them), and the verdict of the two tests (a significant gain, a
significant loss, or no significant difference: either test after Holm's correction,
guider.report.tables.direction), with the counts of each over the whole table. Written as
reStructuredText, which the HTML report shows on its landing page (workflow/report/workflow.rst
includes it), and as Markdown for the README.
"""

from __future__ import annotations

import re

import pandas as pd

from guider.report.labels import backbone_name, dataset_name, learn, metric_long_name
from guider.report.tables import direction, seed_values

VERDICTS = {"gain": "significant gain", "loss": "significant loss", "tie": "no significant difference"}


def headline_rows(runs: pd.DataFrame, tests: pd.DataFrame, metric: str, alpha: float) -> pd.DataFrame:
    """One row per (dataset, backbone) compared on `metric`: means, change, p-values, verdict."""
    learn(runs)
    rows = []
    for test in tests[tests["metric"] == metric].itertuples(index=False):
        plain = seed_values(runs, test.dataset, test.backbone, "none", metric).mean()
        guided = seed_values(runs, test.dataset, test.backbone, "paper", metric).mean()
        rows.append(
            {
                "dataset": dataset_name(test.dataset),
                "backbone": backbone_name(test.backbone),
                "plain": plain,
                "guider": guided,
                "change": (guided - plain) / plain if plain else float("nan"),
                "p_seeds": test.p_seeds_holm,
                "p_users": test.p_users_holm,
                "verdict": direction(pd.Series(test._asdict()), alpha),
                **_teacher_and_detection(runs, test.dataset, test.backbone, metric),
            }
        )
    if not rows:
        raise ValueError(f"no plain vs GUIDER comparison on {metric} in the significance tests")
    return pd.DataFrame(rows)


def summary_sentence(rows: pd.DataFrame, metric: str, alpha: float, n_seeds: int) -> str:
    counts = rows["verdict"].value_counts()
    gains, losses = (_count(counts.get(key, 0), VERDICTS[key]) for key in ("gain", "loss"))
    return (
        f"GUIDER vs the plain backbones on test {metric_long_name(metric)} ({n_seeds} seeds): {gains}, {losses}, "
        f"{counts.get('tie', 0)} without a significant difference, out of {len(rows)} comparisons "
        f"(paired t-test over seeds or per-user Wilcoxon test, Holm-corrected, alpha {alpha})."
    )


def _count(n: int, noun: str) -> str:
    """'1 significant loss', '2 significant losses', '0 significant gains'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _teacher_and_detection(runs: pd.DataFrame, dataset: str, backbone: str, metric: str) -> dict[str, float]:
    """GUIDER's teacher on `metric` and AMSC's lift on the data's noise labels (means over the
    GUIDER runs' seeds; NaN where the runs record none)."""
    guided = runs[(runs["data"] == "base") & (runs["dataset"] == dataset) & (runs["backbone"] == backbone)]
    guided = guided[guided["method"] == "paper"]

    def mean(column: str) -> float:
        return float(guided[column].mean()) if column in guided.columns else float("nan")

    return {"teacher": mean(f"teacher.test.{metric}"), "lift": mean("detect.injected_noise.lift")}


def _cells(row) -> list[str]:
    """The Markdown row: everything on one line (README tables may be wide)."""
    p = f"{_p(row.p_seeds)} / {_p(row.p_users)}"
    return [*_answer_cells(row)[:-1], p, VERDICTS[row.verdict], *_why_cells(row)[-2:]]


def _answer_cells(row) -> list[str]:
    return [row.dataset, row.backbone, f"{row.plain:.4f}", f"{row.guider:.4f}", f"{row.change:+.1%}",
            VERDICTS[row.verdict]]  # fmt: skip


def _why_cells(row) -> list[str]:
    return [row.dataset, row.backbone, _p(row.p_seeds), _p(row.p_users), _maybe(row.teacher, "{:.4f}"),
            _maybe(row.lift, "{:.2f}x")]  # fmt: skip


def _maybe(value: float, form: str) -> str:
    return "n/a" if value != value else form.format(value)


HEADER = ["dataset", "backbone", "plain", "+GUIDER", "change", "p (seeds / users, Holm)", "verdict", "teacher",
          "AMSC lift"]  # fmt: skip
ANSWER_HEADER = ["dataset", "backbone", "plain", "+GUIDER", "change", "verdict"]
WHY_HEADER = ["dataset", "backbone", "p seeds", "p users", "teacher", "AMSC lift"]
WHY_TEXT = (
    "How sure, and why: the Holm-corrected p-values of the paired t-test over seeds and of the "
    "per-user Wilcoxon test; GUIDER's teacher on the same metric; AMSC's lift over a random "
    "detector on the data's injected noise (n/a on clean data)."
)


def rst(rows: pd.DataFrame, sentence: str, note: str | None = None) -> str:
    """The landing page's section: the sentence and two narrow list-tables (the report's text
    column is 512 px wide; one nine-column table overflowed into the workflow graph)."""
    lines = ["The answer", "----------", "", rst_text(sentence), ""]
    lines += [f"*{rst_text(note)}*", ""] if note else []
    lines += _list_table(ANSWER_HEADER, [_answer_cells(row) for row in rows.itertuples(index=False)])
    lines += [rst_text(WHY_TEXT), ""]
    lines += _list_table(WHY_HEADER, [_why_cells(row) for row in rows.itertuples(index=False)])
    return "\n".join(lines) + "\n"


def _list_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *body]:
        cells = [rst_text(cell) for cell in cells]
        lines.append(f"   * - {cells[0]}")
        lines += [f"     - {cell}" for cell in cells[1:]]
    return [*lines, ""]


_RST_SPECIAL = re.compile(r"([\\`*_|@<>\[\]:])")


def rst_text(text: str) -> str:
    """`text` as literal reStructuredText: markup characters backslash-escaped (docutils made
    `Recall@20` a mailto link, and a note's `*` or backquotes would start markup)."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def markdown(rows: pd.DataFrame, sentence: str) -> str:
    lines = [sentence, "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * 2 + "---:|" * 4 + "---|" + "---:|" * 2]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _p(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:.2g}" if value >= 0.001 else "<0.001"
