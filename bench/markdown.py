"""Formatting figures for RESULTS.md: units and Markdown tables."""

from __future__ import annotations

from bench.measure import Series


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def megabytes(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


def mebibytes(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def spread(series: Series, name: str | None = None) -> str:
    """Lowest and highest over the runs, of wall seconds or of the named value."""
    low, high = series.spread(name)
    return f"{low:.1f}–{high:.1f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]
