"""The recoverable window from what a store holds: continuous chains, gaps, partial tails,
base backups without their WAL, and timeline switches described by history files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drkit.archive.walnames import (
    Segment,
    TimelineSwitch,
    format_lsn,
    parse_history,
    parse_lsn,
    parse_segment_name,
)
from drkit.archive.window import BaseBackup, HeldWal, compute_window

SIZE = 16 * 1024 * 1024
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def held(timeline: int, number: int, minutes: int | None, *, partial: bool = False) -> HeldWal:
    covered = T0 + timedelta(minutes=minutes) if minutes is not None else None
    return HeldWal(Segment(timeline, number), partial, SIZE // 2 if partial else SIZE, covered)


def backup(number: int, end_minutes: int, timeline: int = 1) -> BaseBackup:
    start = number * SIZE + 40
    return BaseBackup(
        f"b{number}", timeline, start, start + 4096, T0 + timedelta(minutes=end_minutes)
    )


def test_names_and_positions_round_trip() -> None:
    assert parse_segment_name("000000010000000A000000FF") == Segment(1, 0xA * 256 + 0xFF)
    assert Segment(1, 0xA * 256 + 0xFF).name() == "000000010000000A000000FF"
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert parse_history("1\t0/5000000\tno recovery target specified\n") == [
        TimelineSwitch(1, 0x5000000)
    ]


def test_a_continuous_chain_ends_at_the_newest_proven_moment() -> None:
    wal = [held(1, 2, 1), held(1, 3, 2), held(1, 4, 3, partial=True)]
    window = compute_window("east", [backup(2, 0)], wal, {})
    assert (window.start, window.end) == (T0, T0 + timedelta(minutes=3))
    assert window.problems == []
    assert window.last_segment == "000000010000000000000004"
    assert window.end_lsn == 4 * SIZE + SIZE // 2  # the partial segment's valid bytes


def test_a_missing_segment_is_a_gap_and_the_window_ends_before_it() -> None:
    wal = [held(1, 2, 1), held(1, 4, 3), held(1, 5, 4, partial=True)]
    window = compute_window("east", [backup(2, 0)], wal, {})
    assert window.end == T0 + timedelta(minutes=1)
    assert window.problems == ["gap: segment 000000010000000000000003 is missing"]


def test_a_base_backup_after_a_gap_starts_a_new_window_and_the_old_one_is_reported() -> None:
    wal = [held(1, 2, 1), held(1, 4, 5), held(1, 5, 6)]
    window = compute_window("east", [backup(2, 0), backup(4, 4)], wal, {})
    assert (window.start, window.end) == (T0 + timedelta(minutes=4), T0 + timedelta(minutes=6))
    assert any("cut off by a gap" in problem for problem in window.problems)


def test_a_base_backup_without_its_wal_gives_no_window() -> None:
    window = compute_window("east", [backup(7, 0)], [held(1, 2, 1)], {})
    assert window.is_empty
    assert any("lacks the WAL" in problem for problem in window.problems)


def test_a_timeline_switch_is_followed_through_its_history_file() -> None:
    switch = {2: [TimelineSwitch(1, 4 * SIZE + 100)]}  # timeline 2 begins in segment 4
    wal = [held(1, 2, 1), held(1, 3, 2), held(2, 4, 3), held(2, 5, 4, partial=True)]
    window = compute_window("east", [backup(2, 0)], wal, switch)
    assert window.problems == []
    assert window.end == T0 + timedelta(minutes=4)
    assert window.last_segment == "000000020000000000000005"


def test_a_new_timeline_without_its_history_file_is_reported() -> None:
    wal = [held(1, 2, 1), held(2, 3, 2)]
    window = compute_window("east", [backup(2, 0)], wal, {})
    assert "timeline 2 has no 00000002.history" in window.problems
