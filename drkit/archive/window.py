"""The recoverable window of one store, computed from what it holds (pure).

A moment T is recoverable from a store when the store holds a base backup that ended (became
consistent) at or before T, and every WAL segment from that backup's start up to a file proven
to hold everything the server had flushed at T, across timeline switches as their history
files describe them. The window is [end of the oldest such base backup, newest proven moment].
A segment missing in the middle is a gap: the window ends before it, and it is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from drkit.archive.walnames import (
    DEFAULT_SEGMENT_SIZE,
    Segment,
    TimelineSwitch,
    format_lsn,
    history_name,
    segment_of,
)

#: (start, end, base backup, name of the last file, position reached) of one backup's chain
Range = tuple[datetime, datetime, str, str | None, int]


@dataclass(frozen=True)
class BaseBackup:
    """A physical base backup in a store: the WAL it needs starts at ``start_lsn``, and it is
    consistent once replay passes ``end_lsn`` (at ``end_time``)."""

    snapshot_id: str
    timeline: int
    start_lsn: int
    end_lsn: int
    end_time: datetime


@dataclass(frozen=True)
class HeldWal:
    """A WAL segment (complete or partial) a store holds."""

    segment: Segment
    partial: bool
    valid_bytes: int
    covered_until: datetime | None


@dataclass
class Window:
    """What one store can restore: [start, end], from which base backup, and what is wrong."""

    store: str
    start: datetime | None = None
    end: datetime | None = None
    base_backups: list[str] = field(default_factory=list)
    #: problems found on the way: gaps, a missing history file, a base backup without WAL
    problems: list[str] = field(default_factory=list)
    last_segment: str | None = None
    #: the WAL position up to which the store holds everything (the last archived LSN)
    end_lsn: int | None = None

    @property
    def is_empty(self) -> bool:
        return self.start is None or self.end is None or self.end < self.start

    def contains(self, moment: datetime) -> bool:
        return not self.is_empty and self.start <= moment <= self.end  # type: ignore[operator]

    def to_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "base_backups": self.base_backups,
            "last_segment": self.last_segment,
            "last_lsn": None if self.end_lsn is None else format_lsn(self.end_lsn),
            "problems": self.problems,
        }


@dataclass
class TimelinePath:
    """The timelines recovery follows to the newest one, each with the segment it begins in."""

    begins: list[tuple[int, int]]  # (timeline, first segment number), oldest first

    def timeline_for(self, number: int) -> int:
        """The timeline whose file recovery reads for segment ``number``: the newest one
        begun at or before it (the switch segment is read from the new timeline)."""
        chosen = self.begins[0][0]
        for timeline, first in self.begins:
            if first <= number:
                chosen = timeline
        return chosen

    def includes(self, timeline: int) -> bool:
        return any(entry == timeline for entry, _ in self.begins)


def timeline_path(
    newest: int, histories: dict[int, list[TimelineSwitch]], segment_size: int
) -> tuple[TimelinePath, list[str]]:
    """The path to timeline ``newest`` from its history file (problems when it is missing)."""
    if newest == 1:
        return TimelinePath([(1, 0)]), []
    switches = histories.get(newest)
    if switches is None:
        return TimelinePath([(newest, 0)]), [f"timeline {newest} has no {history_name(newest)}"]
    begins = [(switches[0].parent if switches else newest, 0)]
    for index, switch in enumerate(switches):
        child = switches[index + 1].parent if index + 1 < len(switches) else newest
        begins.append((child, segment_of(switch.position, segment_size)))
    return TimelinePath(begins), []


def compute_window(
    store: str,
    base_backups: Sequence[BaseBackup],
    wal: Iterable[HeldWal],
    histories: dict[int, list[TimelineSwitch]],
    segment_size: int = DEFAULT_SEGMENT_SIZE,
) -> Window:
    """The store's recoverable window, walking the WAL from each base backup, oldest first."""
    window = Window(store)
    complete: dict[Segment, HeldWal] = {}
    partial: dict[Segment, HeldWal] = {}
    for held in wal:
        (partial if held.partial else complete)[held.segment] = held
    timelines = {segment.timeline for segment in (*complete, *partial)} | set(histories)
    timelines |= {backup.timeline for backup in base_backups}
    if not timelines:
        return window
    path, window.problems = timeline_path(max(timelines), histories, segment_size)
    newest_complete = max((segment.number for segment in complete), default=-1)
    reported_gaps: set[int] = set()
    ranges: list[Range] = []
    for backup in sorted(base_backups, key=lambda backup: backup.end_lsn):
        if not path.includes(backup.timeline):
            window.problems.append(
                f"base backup {backup.snapshot_id} is on timeline {backup.timeline}, "
                "not an ancestor of the newest timeline"
            )
            continue
        number = segment_of(backup.start_lsn, segment_size)
        proven: list[datetime] = []
        last: Segment | None = None
        while (segment := Segment(path.timeline_for(number), number)) in complete:
            held = complete[segment]
            if held.covered_until is not None:
                proven.append(held.covered_until)
            last, number = segment, number + 1
        reached = number * segment_size
        tail = partial.get(Segment(path.timeline_for(number), number))
        if tail is not None:
            reached += tail.valid_bytes
            last = tail.segment
            if tail.covered_until is not None:
                proven.append(tail.covered_until)
        if number <= newest_complete and number not in reported_gaps:
            reported_gaps.add(number)
            missing = Segment(path.timeline_for(number), number).name(segment_size)
            window.problems.append(f"gap: segment {missing} is missing")
        if reached < backup.end_lsn:
            window.problems.append(
                f"base backup {backup.snapshot_id} lacks the WAL to become consistent"
            )
            continue
        end = max([backup.end_time, *proven])
        last_name = last.name(segment_size) if last else None
        ranges.append((backup.end_time, end, backup.snapshot_id, last_name, reached))
    choose_range(window, ranges)
    if base_backups and not window.base_backups and not window.problems:
        window.problems.append("no base backup has its WAL in this store")
    return window


def choose_range(window: Window, ranges: list[Range]) -> None:
    """The window is the newest run of overlapping ranges; an older run cut off by a gap is
    named as a problem (moments in it are restorable, but not continuously up to now)."""
    for start, end, snapshot_id, last, reached in sorted(ranges, key=lambda item: item[0]):
        if window.end is not None and start > window.end:
            window.problems.append(
                f"older window {window.start:%Y-%m-%d %H:%M:%S} to "
                f"{window.end:%Y-%m-%d %H:%M:%S} UTC is cut off by a gap"
            )
            window.start, window.end, window.base_backups = None, None, []
        if window.start is None:
            window.start = start
        window.base_backups.append(snapshot_id)
        if window.end is None or end > window.end:
            window.end = end
            window.last_segment = last
            window.end_lsn = reached
