"""The one table renderer: rows of cells as aligned text (CLI, benchmarks) or HTML (widgets)."""

import html


def text_table(rows, align, widths=None, sep=" ", rule=False):
    """Lines of a text table; ``align`` is "<" or ">" per column, widths are minimums.

    Widths not given are the widest cell of the column.  ``rule`` draws a line of
    dashes under the first row (the header).  Trailing blanks are dropped.
    """
    rows = [[str(cell) for cell in row] for row in rows]
    widths = list(widths) if widths else [0] * len(align)
    widths = [max([w, *(len(row[i]) for row in rows)]) for i, w in enumerate(widths)]
    lines = [sep.join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True))
             .rstrip() for row in rows]
    if rule and lines:
        lines.insert(1, sep.join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(rows):
    """A two-column HTML table of (label, value) rows, values right-aligned in bold."""
    cells = "".join(f"<tr><td style='padding-right:1em'>{html.escape(str(k))}</td>"
                    f"<td style='text-align:right'><b>{html.escape(str(v))}</b></td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"
