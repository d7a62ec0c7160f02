"""Where an unfinished segment's WAL ends: read off the file, and from the receiver's flushed
position when the last record ends in zero bytes (the cause of a stalled proof on a timeline
that had just been promoted and was idle)."""

from __future__ import annotations

from pathlib import Path

from drkit.archive.archiver import Shipment, extend_to_received
from drkit.archive.objects import WalObject

SIZE = 16 * 1024 * 1024


def partial(name: str, valid: int) -> Shipment:
    start = int(name[16:], 16) * SIZE
    end = start + -(-valid // 8) * 8
    return Shipment(WalObject("partial", name), b"", "x", valid, end, Path(name), file_bytes=SIZE)


def test_a_last_record_ending_in_zero_bytes_is_reached_through_the_flushed_position() -> None:
    # the file's last non-zero byte says 0/90001B0; pg_receivewal flushed up to 0/90001B8
    old_timeline = partial("000000010000000000000007", 0xD0)
    newest = partial("000000020000000000000009", 0x1B0)
    extend_to_received([old_timeline, newest], 0x90001B8)
    assert (newest.end_position, newest.valid_bytes) == (0x90001B8, 0x1B8)
    assert old_timeline.end_position == 0x70000D0


def test_after_a_switch_only_the_newest_timeline_takes_the_position() -> None:
    old_timeline = partial("000000010000000000000007", 0xD0)
    new_timeline = partial("000000020000000000000007", 0xD0)
    extend_to_received([old_timeline, new_timeline], 0x7000200)
    assert new_timeline.end_position == 0x7000200
    assert old_timeline.end_position == 0x70000D0


def test_a_position_outside_every_partial_or_behind_the_file_changes_nothing() -> None:
    shipment = partial("000000010000000000000009", 0x400)
    extend_to_received([shipment], 0xA000010)  # in a segment the spool has no partial of
    extend_to_received([shipment], 0x9000100)  # behind what the file shows
    assert (shipment.end_position, shipment.valid_bytes) == (0x9000400, 0x400)
