"""Renderers of a `RenderTable` (cells with bold, underline and a mark): rich, Markdown, LaTeX.

A RenderTable is format-neutral: text in Unicode ("0.8732 ± 0.0005", "†"), styles as flags. Each
renderer spells them its own way: rich styles; Markdown `**bold**` and `<u>underline</u>`; LaTeX
`\\textbf`, `\\underline`, `$^{\\dagger}$` with every other special character escaped, so that the
table compiles with pdflatex (it needs `\\usepackage{booktabs}`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Cell:
    """One cell: its text, whether it is the best (bold) or second best (underlined) of its
    column, and a significance mark written after it."""

    text: str
    bold: bool = False
    underline: bool = False
    mark: str = ""


@dataclass(frozen=True)
class RenderTable:
    """A titled table: a header, rows of cells (the first is the row label), footnotes, and the
    indices of rows preceded by a horizontal rule (e.g. the Improv. row)."""

    title: str
    header: list[str]
    rows: list[list[Cell]]
    footnotes: list[str] = field(default_factory=list)
    rules_before: frozenset[int] = frozenset()


def to_rich(table: RenderTable) -> Table:
    """A rich Table; labels are Text objects, so brackets in "lcron[tau=20.0]" stay literal."""
    rich_table = Table(
        title=table.title,
        caption="\n".join(table.footnotes) or None,
        caption_justify="left",
    )
    for index, name in enumerate(table.header):
        rich_table.add_column(Text(name), justify="left" if index == 0 else "right")
    for index, row in enumerate(table.rows):
        cells = []
        for cell in row:
            style = " ".join(
                s for s, on in (("bold", cell.bold), ("underline", cell.underline)) if on
            )
            text = Text(cell.text, style=style)
            if cell.mark:
                text.append(cell.mark)
            cells.append(text)
        rich_table.add_row(*cells, end_section=index + 1 in table.rules_before)
    return rich_table


def _markdown_cell(cell: Cell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.bold:
        text = f"**{text}**"
    if cell.underline:
        text = f"<u>{text}</u>"
    return text + cell.mark


def to_markdown(table: RenderTable) -> str:
    """A GitHub Markdown table: bold title line, the table, then the footnotes."""
    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(h.replace("|", "\\|") for h in table.header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in table.rows]
    if table.footnotes:
        lines += [""] + [f"{note}  " for note in table.footnotes]
    return "\n".join(lines)


_LATEX_SPECIAL = {
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
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "±": r"$\pm$",
    "†": r"$^{\dagger}$",
    "‡": r"$^{\ddagger}$",
    "τ": r"$\tau$",
    "α": r"$\alpha$",
    "λ": r"$\lambda$",
    "Δ": r"$\Delta$",
    "−": r"$-$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "–": "--",
    "—": "---",
    "…": r"\dots{}",
    "’": "'",
}


def latex_escape(text: str) -> str:
    """Text safe for pdflatex: specials escaped, known Unicode as macros, other non-ASCII reduced
    to its ASCII base letter (é -> e) or dropped."""
    out = []
    for index, char in enumerate(text):
        if char == "-" and text[index + 1 : index + 2] == "-":
            out.append("-{}")  # "--" would print as an en dash: keep "--eval-protocol" literal
        elif char in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[char])
        elif char.isascii():
            out.append(char)
        else:
            out.append(unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode())
    return "".join(out)


#: A minus sign in front of a number ("-0.0187", "[-0.03"): typeset as a math minus, not a hyphen.
_NEGATIVE_NUMBER = re.compile(r"(?<![\w.])-(?=\d)")


def _latex_cell(cell: Cell) -> str:
    text = _NEGATIVE_NUMBER.sub(r"$-$", latex_escape(cell.text))
    if cell.bold:
        text = rf"\textbf{{{text}}}"
    if cell.underline:
        text = rf"\underline{{{text}}}"
    return text + latex_escape(cell.mark)


def to_latex(table: RenderTable, label: str | None = None) -> str:
    """A `table` float with a booktabs tabular and the footnotes below it."""
    columns = "l" + "r" * (len(table.header) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(table.title)}}}",
    ]
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [
        rf"\begin{{tabular}}{{{columns}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    for index, row in enumerate(table.rows):
        if index in table.rules_before:
            lines.append(r"\midrule")
        lines.append(" & ".join(_latex_cell(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.footnotes:
        notes = r" \\ ".join(latex_escape(n) for n in table.footnotes)
        lines += [r"\par\smallskip", rf"\parbox{{\linewidth}}{{\footnotesize {notes}}}"]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def latex_document(tables: list[str]) -> str:
    """A standalone document around rendered tables (for compiling them on their own)."""
    body = "\n\n".join(tables)
    return (
        "\\documentclass{article}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n"
        "\\usepackage{booktabs}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    )
