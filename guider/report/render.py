"""Markdown and LaTeX (booktabs) text of a `tables.Table`."""

from __future__ import annotations

from guider.report.labels import dataset_name, metric_name
from guider.report.tables import DECIMALS, SEED_LOSS_MARK, SEED_MARK, USER_LOSS_MARK, USER_MARK, Cell, Table

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
_LATEX_MARKS = {SEED_MARK: "*", USER_MARK: r"\dagger", SEED_LOSS_MARK: r"\circ", USER_LOSS_MARK: r"\ddagger"}


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
    escaped = _tex(note)
    for mark, tex in _LATEX_MARKS.items():
        escaped = escaped.replace(mark, rf"$^{{{tex}}}$")
    return escaped


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { border-bottom: 2px solid #444; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
caption { caption-side: top; font-weight: bold; text-align: left; margin-bottom: 0.5em; }
p.note { font-size: 0.85em; color: #444; max-width: 60em; }
"""


def html_from_markdown(markdown_text: str, title: str) -> str:
    """A self-contained HTML page of one of the report's Markdown tables (the caption line in
    bold, a pipe table, then notes), so the HTML report shows it as a table."""
    import html

    lines = markdown_text.splitlines()
    caption = lines[0].strip("*") if lines and lines[0].startswith("**") else title
    table_lines = [line for line in lines if line.startswith("|")]
    notes = [line.strip() for line in lines[1:] if line.strip() and not line.startswith("|")]
    rows = [_md_cells(line) for line in table_lines if not set(line) <= set("|-: ")]
    body = [f"<caption>{_inline(html.escape(caption))}</caption>"]
    if rows:
        body.append("<tr>" + "".join(f"<th>{_inline(html.escape(c))}</th>" for c in rows[0]) + "</tr>")
        body += ["<tr>" + "".join(f"<td>{_inline(html.escape(c))}</td>" for c in row) + "</tr>" for row in rows[1:]]
    notes_html = "".join(f'<p class="note">{_inline(html.escape(n))}</p>' for n in notes)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_HTML_STYLE}</style></head><body><table>{''.join(body)}</table>{notes_html}</body></html>\n"
    )


def _md_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def _inline(text: str) -> str:
    """Markdown emphasis and escapes of one cell, as HTML."""
    import re

    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return text.replace(r"\*", "*")
