"""Markdown and LaTeX (booktabs) text of a `tables.Table`."""

from __future__ import annotations

from guider.report.labels import dataset_name, metric_name
from guider.report.tables import DECIMALS, SEED_MARK, USER_MARK, Cell, Table

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"$<$",
    ">": r"$>$",
}
_LATEX_MARKS = {SEED_MARK: "*", USER_MARK: r"\dagger"}


def markdown(table: Table) -> str:
    header = ["Backbone", "Method"] + [f"{dataset_name(g)} {metric_name(m)}" for g, m in table.columns]
    lines = [f"**{table.caption}**", "", _md_row(header), "|" + "---|" * 2 + "---:|" * len(table.columns)]
    previous_block = None
    for row in table.rows:
        block = row.block if row.block != previous_block else ""
        previous_block = row.block
        lines.append(_md_row([block, row.label] + [_md_cell(cell) for cell in row.cells]))
    lines += [""] + [note.replace("*", r"\*") + "  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def latex(table: Table, label: str) -> str:
    n = len(table.metrics)
    spec = "ll" + "".join(" " + "r" * n for _ in table.groups)
    groups = " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{_tex(dataset_name(g))}}}" for g in table.groups)
    rules = " ".join(rf"\cmidrule(lr){{{3 + i * n}-{2 + (i + 1) * n}}}" for i in range(len(table.groups)))
    metrics = " & ".join(_tex(metric_name(m)) for _, m in table.columns)
    lines = [
        r"\begin{table*}[t]",
        r"\centering",
        rf"\caption{{{_tex(table.caption)}}}",
        rf"\label{{{label}}}",
        r"\small",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        rf" & & {groups} \\",
        rules,
        rf"Backbone & Method & {metrics} \\",
    ]
    previous_block = None
    for row in table.rows:
        if row.block != previous_block:
            lines.append(r"\midrule")
        block = _tex(row.block) if row.block != previous_block else ""
        previous_block = row.block
        lines.append(" & ".join([block, _tex(row.label)] + [_tex_cell(cell) for cell in row.cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip\footnotesize {_tex_note(note)}" for note in table.notes]
    lines.append(r"\end{table*}")
    return "\n".join(lines) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_cell(cell: Cell | str | None) -> str:
    if cell is None:
        return "–"
    if isinstance(cell, str):
        return cell
    text = _number(cell, "±")
    text = f"**{text}**" if cell.bold else text
    return text + cell.marks.replace("*", r"\*")


def _tex_cell(cell: Cell | str | None) -> str:
    if cell is None:
        return "--"
    if isinstance(cell, str):
        return _tex(cell)
    mean = f"{cell.mean:.{DECIMALS}f}"
    mean = rf"\textbf{{{mean}}}" if cell.bold else mean
    std = rf"{{\scriptsize$\pm${cell.std:.{DECIMALS}f}}}" if cell.n > 1 else ""
    marks = "".join(_LATEX_MARKS[m] for m in cell.marks)
    return mean + std + (rf"$^{{{marks}}}$" if marks else "")


def _number(cell: Cell, pm: str) -> str:
    mean = f"{cell.mean:.{DECIMALS}f}"
    return f"{mean}{pm}{cell.std:.{DECIMALS}f}" if cell.n > 1 else mean


def _tex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text).replace("±", r"$\pm$")


def _tex_note(note: str) -> str:
    escaped = _tex(note.replace(SEED_MARK + ":", "\0S:").replace(USER_MARK + ":", "\0U:"))
    return escaped.replace("\0S:", r"$^{*}$:").replace("\0U:", r"$^{\dagger}$:")
