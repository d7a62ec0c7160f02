"""Plain-text tables for people: a header row, columns padded to their widest cell, two
spaces between columns, the last column unpadded (no trailing blanks to trip ``diff``)."""

from __future__ import annotations

from collections.abc import Sequence

GAP = "  "


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The table's lines, header first."""
    widths = [len(title) for title in header]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append(GAP.join([*cells, row[-1]]).rstrip())
    return lines
