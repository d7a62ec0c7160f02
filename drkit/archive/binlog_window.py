"""The recoverable window of one store for a MariaDB/MySQL source (pure), in the same form as
PostgreSQL's (``window.Window``).

A moment T is recoverable from a store when the store holds a dump whose snapshot was taken
at or before T and every binlog file from the dump's binlog position up to a file proven to
hold everything the server had written at T. Binlog files are numbered: a number missing
between the dump's file and the newest held file is a gap. Problems the archiver recorded
(files purged before they were archived, numbering restarted by a server switch) are named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from drkit.archive.window import Range, Window, choose_range
from drkit.catalog.wal import WalRecord
from drkit.sources.binlog_stream import BinlogFile, parse_binlog_name

#: ledger rows of this kind are problems the archiver found, not objects in a store
PROBLEM_KIND = "problem"


@dataclass(frozen=True)
class BinlogDump:
    """A dump in a store, consistent with binlog ``start`` at byte ``position`` since ``time``."""

    snapshot_id: str
    start: BinlogFile
    position: int
    time: datetime


def compute_binlog_window(
    store: str, dumps: Sequence[BinlogDump], records: Sequence[WalRecord]
) -> Window:
    """The store's window from its dumps and ledger rows, walking the binlog from each dump."""
    window = Window(store)
    complete: dict[BinlogFile, WalRecord] = {}
    partial: dict[BinlogFile, WalRecord] = {}
    for record in records:
        if record.kind == PROBLEM_KIND:
            window.problems.append(record.detail or record.name)
        elif (found := parse_binlog_name(record.name)) is not None:
            (partial if record.kind == "partial" else complete)[found] = record
    newest_complete = max((found.number for found in complete), default=-1)
    reported: set[int] = set()
    ranges: list[Range] = []
    for dump in sorted(dumps, key=lambda dump: dump.time):
        base, number = dump.start.base, dump.start.number
        proven: list[datetime] = []
        last: BinlogFile | None = None
        while (found := BinlogFile(number, base)) in complete:
            if complete[found].covered_until is not None:
                proven.append(complete[found].covered_until)  # type: ignore[arg-type]
            last, number = found, number + 1
        reached = BinlogFile(number, base).position(0)
        tail = partial.get(BinlogFile(number, base))
        if tail is not None:
            reached += tail.valid_bytes or 0
            last = BinlogFile(number, base)
            if tail.covered_until is not None:
                proven.append(tail.covered_until)
        if number <= newest_complete and number not in reported:
            reported.add(number)
            window.problems.append(f"gap: binlog {BinlogFile(number, base).name} is missing")
        if reached < dump.start.position(dump.position):
            window.problems.append(
                f"dump {dump.snapshot_id} lacks binlog {dump.start.name}, where it starts"
            )
            continue
        end = max([dump.time, *proven])
        ranges.append((dump.time, end, dump.snapshot_id, last.name if last else None, reached))
    choose_range(window, ranges)
    window.end_lsn = None  # a WAL position; the binlog's is the last file's name and size
    if dumps and not window.base_backups and not window.problems:
        window.problems.append("no dump has its binlog in this store")
    return window
