"""The recoverable window of one store for a SQLite source (pure), in the same form as
PostgreSQL's and MariaDB's (``window.Window``).

A moment T is recoverable from a store when the store holds the base copy of a capture
generation that started at or before T and every segment of that generation from its first
up to one proven to hold everything committed by T. Segments are numbered within their
generation: a number missing below the newest held one is a gap. Generations follow each
other with a gap between them (a new one starts only when continuity could not be proven),
which the archiver also records as a problem.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from drkit.archive.binlog_window import PROBLEM_KIND
from drkit.archive.sqlite_names import generation_time, parse_segment_name, segment_name
from drkit.archive.window import Range, Window, choose_range
from drkit.catalog.wal import WalRecord


def compute_sqlite_window(store: str, records: Sequence[WalRecord]) -> Window:
    """The store's window from its ledger rows: walking each generation from its base."""
    window = Window(store)
    bases: set[str] = set()
    complete: dict[str, dict[int, WalRecord]] = defaultdict(dict)
    partial: dict[str, dict[int, WalRecord]] = defaultdict(dict)
    for record in records:
        if record.kind == PROBLEM_KIND:
            window.problems.append(record.detail or record.name)
        elif record.kind == "base":
            bases.add(record.name)
        elif (found := parse_segment_name(record.name)) is not None:
            generation, number = found
            (partial if record.kind == "partial" else complete)[generation][number] = record
    ranges: list[Range] = []
    for generation in sorted(bases):
        start = generation_time(generation)
        if start is None:
            continue
        proven: list[datetime] = []
        number, last = 1, None
        while number in complete[generation]:
            held = complete[generation][number]
            if held.covered_until is not None:
                proven.append(held.covered_until)
            last, number = held.name, number + 1
        tail = partial[generation].get(number)
        if tail is not None:
            last = tail.name
            if tail.covered_until is not None:
                proven.append(tail.covered_until)
        if last is None:
            window.problems.append(f"generation {generation} has its base copy but no segment")
            continue
        reached = number if tail is not None else number - 1
        if max([*complete[generation], *partial[generation]]) > reached:
            missing = segment_name(generation, reached + 1)
            window.problems.append(f"gap: segment {missing} is missing")
        ranges.append((start, max([start, *proven]), generation, last, number))
    for generation in sorted(set(complete) | set(partial)):
        if generation not in bases:
            window.problems.append(f"generation {generation} lacks its base copy")
    choose_range(window, ranges)
    window.end_lsn = None  # a WAL position; a SQLite capture's is its last segment
    return window
