"""HTML pieces the report's sections share."""

from __future__ import annotations

from html import escape


def table(head: list[str], rows: list[list[str]]) -> str:
    """A table: escaped headings, cells as given (already HTML)."""
    if not rows:
        return "<p class='muted'>no data</p>"
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    out.append("</table>")
    return "".join(out)
