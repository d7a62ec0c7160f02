"""SQLite's write-ahead log read as bytes against real logs SQLite wrote: every committed
frame and nothing of a transaction not yet committed, the checksum chain stopping at damage,
and a replay over a base copy that equals the database, refusing a chain with a hole."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.errors import IntegrityError
from drkit.sources.sqlite_wal import (
    FRAMES,
    HEADER,
    START,
    WAL_HEADER_SIZE,
    committed_frames,
    encode_record,
    header_payload,
    parse_header,
    read_records,
    replay_into,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def database(tmp_path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return connection


def rows(path: Path) -> list[tuple[int, str]]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.execute("SELECT id, v FROM t ORDER BY id"))
    finally:
        connection.close()


def wal_of(tmp_path: Path) -> bytes:
    return (tmp_path / "app.db-wal").read_bytes()


def test_every_committed_frame_and_nothing_uncommitted(tmp_path: Path) -> None:
    connection = database(tmp_path)
    for number in range(20):
        connection.execute("INSERT INTO t (v) VALUES (?)", (str(number) * 500,))
    header = parse_header(wal_of(tmp_path))
    assert header is not None and header.page_size == 4096
    committed = committed_frames(header, wal_of(tmp_path), WAL_HEADER_SIZE, header.checksum)
    assert committed.commits == 20 and committed.end == len(wal_of(tmp_path))
    other = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    other.execute("PRAGMA cache_size=2")  # a big transaction spills pages into the log early
    other.execute("BEGIN")
    for _ in range(20):
        other.execute("INSERT INTO t (v) VALUES (?)", ("x" * 20_000,))
    wal = wal_of(tmp_path)
    assert len(wal) > committed.end, "no frame of the open transaction reached the log"
    again = committed_frames(header, wal, WAL_HEADER_SIZE, header.checksum)
    assert again.end == committed.end  # frames of the open transaction are not taken
    other.execute("ROLLBACK")


def test_a_damaged_frame_ends_the_chain(tmp_path: Path) -> None:
    connection = database(tmp_path)
    for number in range(10):
        connection.execute("INSERT INTO t (v) VALUES (?)", (str(number),))
    wal = bytearray(wal_of(tmp_path))
    header = parse_header(bytes(wal))
    assert header is not None
    frame = header.frame_size
    wal[WAL_HEADER_SIZE + 5 * frame + 100] ^= 1  # inside the sixth frame's page
    found = committed_frames(header, bytes(wal), WAL_HEADER_SIZE, header.checksum)
    assert found.end <= WAL_HEADER_SIZE + 5 * frame and found.commits < 10
    bad = bytearray(wal[:32])
    bad[10] ^= 1
    assert parse_header(bytes(bad)) is None  # the header's own checksum


def segment(tmp_path: Path, base: Path) -> tuple[bytes, list[list[tuple[int, str]]]]:
    """A capture of 3 rounds (one record each) over a base copy, and the rows after each."""
    connection = database(tmp_path)
    shutil.copy(tmp_path / "app.db", base)
    records = [encode_record(START, NOW, 0)]
    header = None
    offset, running = WAL_HEADER_SIZE, (0, 0)
    states = []
    for round_number in range(3):
        for number in range(5):
            connection.execute("INSERT INTO t (v) VALUES (?)", (f"{round_number}-{number}",))
        wal = wal_of(tmp_path)
        if header is None:
            header = parse_header(wal)
            assert header is not None
            running = header.checksum
            records.append(encode_record(HEADER, NOW, offset, header_payload(header, running)))
        found = committed_frames(header, wal, offset, running)
        moment = NOW + timedelta(seconds=round_number + 1)
        records.append(encode_record(FRAMES, moment, offset, found.data))
        offset, running = found.end, found.checksum
        states.append(rows(tmp_path / "app.db"))
    return b"".join(records), states


def test_a_replay_over_the_base_copy_equals_the_database_at_each_capture(tmp_path: Path) -> None:
    data, states = segment(tmp_path, tmp_path / "base.db")
    for round_number, expected in enumerate(states):
        copy = tmp_path / f"copy-{round_number}.db"
        shutil.copy(tmp_path / "base.db", copy)
        moment = NOW + timedelta(seconds=round_number + 1, milliseconds=500)
        replay = replay_into(copy, iter([data]), moment)
        assert rows(copy) == expected
        assert replay.landed_at == NOW + timedelta(seconds=round_number + 1)
        assert replay.transactions == 5 * (round_number + 1)


def test_a_replay_refuses_a_hole_or_damage_in_the_chain(tmp_path: Path) -> None:
    data, _ = segment(tmp_path, tmp_path / "base.db")
    records = list(read_records(data))
    whole = [data[: records[0].end]]
    pieces = [data[a.end : b.end] for a, b in itertools.pairwise(records)]
    without_second_round = b"".join(whole + pieces[:2] + pieces[3:])
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "base.db", copy)
    with pytest.raises(IntegrityError, match="do not continue"):
        replay_into(copy, iter([without_second_round]), None)
    damaged = bytearray(data)
    damaged[records[-1].end - 50] ^= 1  # a page of the last round
    shutil.copy(tmp_path / "base.db", copy)
    with pytest.raises(IntegrityError, match="checksums"):
        replay_into(copy, iter([bytes(damaged)]), None)
    shutil.copy(tmp_path / "base.db", copy)
    with pytest.raises(IntegrityError, match="first capture segment"):
        replay_into(copy, iter([b"".join(pieces)]), None)  # the START record is missing


def test_a_torn_last_record_is_left_out(tmp_path: Path) -> None:
    data, _ = segment(tmp_path, tmp_path / "base.db")
    whole = list(read_records(data))
    torn = list(read_records(data[:-10]))
    assert len(torn) == len(whole) - 1
