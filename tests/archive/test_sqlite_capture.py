"""Continuous capture of a SQLite database's write-ahead log under steady writes: the
recoverable window keeps up (RPO of a round or two), a restore to a moment holds exactly the
transactions committed in order up to where the capture had read by then, and the log
starting over under the capture (checkpoints) loses nothing."""

from __future__ import annotations

import errno
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.prune import prune
from drkit.actions.sqlite_pitr import fetch_segments, restore_sqlite_to_moment
from drkit.archive import sqlite_capture
from drkit.archive.capture_fetch import CaptureFetcher
from drkit.archive.objects import WalObject, objects_from_keys, wal_prefix
from drkit.archive.sqlite_capture import SqliteCapture
from drkit.errors import IntegrityError, SourceError
from drkit.plan.schema import SqlitePitr, SqliteSource
from drkit.sources.base import Target
from drkit.sources.sqlite_wal import FRAMES, HEADER, read_records, replay_into
from drkit.stores.faults import FaultyStore
from tests.archive.conftest import running
from tests.archive.sqlite_support import (
    SqliteSetup,
    Writer,
    log_incarnation,
    sqlite_setup,
    writing,
)
from tests.archive.test_point_in_time import wait_for
from tests.conftest import fill_disk

__all__ = ["sqlite_setup"]  # the fixture


def assert_restored_exactly(
    setup: SqliteSetup, writer: Writer, rebuilt: Path, target: datetime, landed: datetime
) -> None:
    """The rebuilt database holds a prefix of the commits, byte for byte: every commit that
    returned before the capture read the log, none that began after the target."""
    source = dict(setup.rows())
    restored = setup.rows(rebuilt)
    ids = [row[0] for row in restored]
    assert ids == list(range(1, len(ids) + 1)), "not a prefix of the commits"
    assert all(source[row_id] == payload for row_id, payload in restored)
    by_id = {commit.id: commit for commit in writer.commits}
    assert landed <= target
    if ids:
        assert by_id[ids[-1]].began <= target  # nothing committed after the moment
    following = by_id.get(len(ids) + 1)
    if following is not None:  # missing only if it was not yet committed when the log was read
        assert following.ended > landed - timedelta(seconds=1), (following, landed)


def test_a_restore_to_a_moment_holds_exactly_the_commits_captured_by_then(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path
) -> None:
    setup = sqlite_setup()
    writer = Writer(setup.database)
    with running(setup.archiver()), writing(writer):
        time.sleep(4)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
        lags = [(datetime.now(UTC) - w.end).total_seconds() for w in setup.windows() if w.end]
    assert len(lags) == 2 and max(lags) < 5, lags
    [window, _] = setup.windows()
    assert window.problems == [] and window.start is not None and window.end is not None
    chance = random.Random(3)
    for attempt in range(3):
        target = window.start + (window.end - window.start) * chance.random()
        rebuilt = tmp_path / f"rebuilt-{attempt}.db"
        result = restore_sqlite_to_moment(
            setup.resources, setup.source, target, target=Target(str(rebuilt))
        )
        assert result.landed_at is not None
        assert target - result.landed_at < timedelta(seconds=2)  # within a round or so
        assert_restored_exactly(setup, writer, rebuilt, target, result.landed_at)
    latest = tmp_path / "latest.db"
    restore_sqlite_to_moment(setup.resources, setup.source, None, target=Target(str(latest)))
    assert setup.rows(latest) == setup.rows()  # the writer stopped before the archiver


def test_the_log_starting_over_under_the_capture_loses_nothing(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture checkpoints a long log (its pin keeps the application's checkpoints from
    letting the log start over), here every 64 KiB, beside a writer checkpointing every few
    pages: SQLite starts its log over again and again, and the capture follows every
    incarnation in one generation, without a gap, and the log stays short."""
    monkeypatch.setattr(sqlite_capture, "CHECKPOINT_BYTES", 64 * 1024)
    setup = sqlite_setup()
    writer = Writer(setup.database, every=0.005, autocheckpoint=4)
    longest = 0
    with running(setup.archiver()), writing(writer):
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            wal = Path(f"{setup.database}-wal")
            longest = max(longest, wal.stat().st_size if wal.exists() else 0)
            time.sleep(0.05)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
    assert longest < 2 * 1024 * 1024, longest
    [window, _] = setup.windows()
    assert len(window.base_backups) == 1  # one generation
    fetcher = CaptureFetcher(
        setup.plan.name, "orders", setup.resources.stores, setup.resources.keys
    )
    segments = fetch_segments(fetcher, window.base_backups[0], window, None)
    incarnations = {
        record.header.salts
        for _, data in segments
        for record in read_records(data)
        if record.kind == HEADER
    }
    assert len(incarnations) > 3, "the log never started over: nothing was tested"
    for window in setup.windows():
        assert window.problems == []
    latest = tmp_path / "latest.db"
    result = restore_sqlite_to_moment(
        setup.resources, setup.source, None, target=Target(str(latest))
    )
    assert setup.rows(latest) == setup.rows()
    assert result.transactions > 100


def test_the_capture_checkpoints_by_frames_before_the_application_would(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the application's default auto-checkpoint (1,000 pages), the capture's own
    checkpoint comes first, by frame count (here 20 instead of 500, so that seconds of writes
    cross it): the log starts over under the capture although fewer than 1,000 frames, and
    far less than 4 MiB, were ever written, so neither SQLite nor the byte limit did it."""
    monkeypatch.setattr(sqlite_capture, "CHECKPOINT_FRAMES", 20)
    setup = sqlite_setup()
    writer = Writer(setup.database, every=0.01)  # SQLite's default wal_autocheckpoint
    with running(setup.archiver()), writing(writer):
        time.sleep(2.5)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
    [window, _] = setup.windows()
    assert window.problems == [] and len(window.base_backups) == 1
    fetcher = CaptureFetcher(
        setup.plan.name, "orders", setup.resources.stores, setup.resources.keys
    )
    records = [
        record
        for _, data in fetch_segments(fetcher, window.base_backups[0], window, None)
        for record in read_records(data)
    ]
    incarnations = {record.header.salts for record in records if record.kind == HEADER}
    page = sqlite3.connect(setup.database).execute("PRAGMA page_size").fetchone()[0]
    frames = sum(len(record.payload) for record in records if record.kind == FRAMES) // (page + 24)
    assert 60 < frames < 1000, frames  # several times the limit, never SQLite's own
    assert len(incarnations) > 2, "the log never started over: nothing was tested"
    latest = tmp_path / "latest.db"
    restore_sqlite_to_moment(setup.resources, setup.source, None, target=Target(str(latest)))
    assert setup.rows(latest) == setup.rows()


def test_the_capture_does_not_checkpoint_the_log_it_just_followed_into(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After its own checkpoint the capture follows the log into its new incarnation in the
    same round. It must not checkpoint that young log too: the log would start over again at
    the application's next write, unread until the next round, and an archiver killed in
    between could not prove continuity (a gap where none was)."""
    monkeypatch.setattr(sqlite_capture, "CHECKPOINT_FRAMES", 20)
    setup = sqlite_setup()
    capture = SqliteCapture(setup.source, tmp_path / "spool")
    capture.spool.mkdir()
    writer = Writer(setup.database, every=0.01, autocheckpoint=100_000)
    followed = 0
    try:
        with writing(writer):
            capture.flush_position()  # the first generation
            deadline = time.monotonic() + 60
            while followed < 3:
                assert time.monotonic() < deadline, f"followed the log {followed} times"
                before = capture.header
                time.sleep(0.1)
                capture.flush_position()
                header = capture.header
                if before is None or header is None or header.salts == before.salts:
                    continue
                followed += 1
                writer.wait_for_commit()
                writer.wait_for_commit()
                # the application wrote twice since: the log it writes is the one captured
                assert log_incarnation(setup.database) == (header.checkpoint, header.salts)
    finally:
        capture.close()


def test_a_damaged_object_fails_over_to_the_other_store_and_damage_in_both_is_named(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path
) -> None:
    setup = sqlite_setup()
    writer = Writer(setup.database)
    with running(setup.archiver()), writing(writer):
        time.sleep(1.5)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
    [window, _] = setup.windows()
    generation = window.base_backups[-1]
    base = WalObject("base", generation).key(setup.plan.name, "orders")
    for store in ("east", "west"):
        path = setup.folder / store / base
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
        if store == "east":
            rebuilt = tmp_path / "failed-over.db"
            result = restore_sqlite_to_moment(
                setup.resources, setup.source, None, target=Target(str(rebuilt))
            )
            assert setup.rows(rebuilt) == setup.rows()
            assert result.failovers and "east" in result.failovers[0]
            # a drill of east's copy fails although west delivered; west's own drill passes
            [east] = drill(setup.resources, store="east")
            failed = [check for check in east.checks if check.passed is False]
            assert east.outcome == "failed" and [c.name for c in failed] == ["copy east of orders"]
            [west] = drill(setup.resources, store="west")
            assert west.outcome == "ok", west.to_json()
    with pytest.raises(IntegrityError, match=f"no store delivers {generation}.base intact"):
        restore_sqlite_to_moment(
            setup.resources, setup.source, None, target=Target(str(tmp_path / "none.db"))
        )
    assert not (tmp_path / "none.db").exists()


def test_prune_deletes_the_generations_before_the_oldest_kept_snapshot_and_their_gap(
    sqlite_setup: Callable[..., SqliteSetup],
) -> None:
    setup = sqlite_setup(plan_extra={"retention": {"keep_last": 1}})
    for round_number in range(2):
        with running(setup.archiver()), writing(Writer(setup.database)):
            time.sleep(1)
        # the application checkpoints and writes with no archiver running: a new generation
        connection = sqlite3.connect(setup.database, isolation_level=None)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("INSERT INTO orders (payload) VALUES (?)", (f"gap {round_number}",))
        connection.close()

    def generations() -> list[str]:
        ledger = setup.catalog.list_wal_objects(setup.plan.name, source="orders")
        return sorted({row.name for row in ledger if row.kind == "base"})

    with running(setup.archiver()):
        wait_for(lambda: len(generations()) == 3, "the third generation")
        assert backup(setup.resources).outcome.value == "ok"
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the backup")
    assert any("gap:" in problem for problem in setup.windows()[0].problems)
    prune(setup.resources)
    for store in ("east", "west"):
        keys = setup.resources.repository.store(store).list(wal_prefix(setup.plan.name, "orders"))
        left = {
            item.name.split("-")[0] for item in objects_from_keys(setup.plan.name, "orders", keys)
        }
        assert left == {generations()[-1]}, store  # the backup was taken in the newest
    for window in setup.windows():
        assert window.problems == [] and window.base_backups == [generations()[-1]]


def test_a_store_failing_past_stall_after_is_told_once_and_so_is_its_recovery(
    sqlite_setup: Callable[..., SqliteSetup],
) -> None:
    setup = sqlite_setup(stall_after="1s")
    east, west = setup.resources.stores
    down = FaultyStore(east)
    setup.resources.stores = [down, west]
    archiver = setup.archiver()
    events: list[tuple[str, str, str]] = []
    archiver.on_event = lambda event, outcome, summary: events.append((event, outcome, summary))
    with running(archiver), writing(Writer(setup.database)):
        down.fail_next["put"] = 8  # a round every 0.5 s: east fails for about 4 s
        wait_for(lambda: down.fail_next["put"] == 0, "the store to come back")
        wait_for(lambda: len(events) == 2, "the recovery to be told")
    [(first, _, summary), (second, outcome, back)] = events
    assert first == "degraded" and summary.startswith("orders@east: nothing archived for")
    assert second == "recovered" and outcome == "ok" and back == "orders@east: archiving caught up"


def test_the_application_closing_and_reopening_its_database_loses_nothing(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path
) -> None:
    """The last connection to close normally checkpoints the log away and deletes it: the
    capture's own connection keeps that from happening while it runs."""
    setup = sqlite_setup()
    with running(setup.archiver()):
        for _ in range(3):  # the application restarts: every connection closes
            with writing(Writer(setup.database)):
                time.sleep(0.7)
            time.sleep(0.6)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
    for window in setup.windows():
        assert window.problems == [] and len(window.base_backups) == 1
    latest = tmp_path / "latest.db"
    restore_sqlite_to_moment(setup.resources, setup.source, None, target=Target(str(latest)))
    assert setup.rows(latest) == setup.rows()


@pytest.mark.parametrize("disk", ["tmpfs", "fsync"])
def test_a_full_spool_skips_rounds_without_a_torn_record_and_loses_nothing(
    sqlite_setup: Callable[..., SqliteSetup],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    small_disk: Callable[[int], Path],
    disk: str,
) -> None:
    """The disk under the spool fills for a few rounds: no proof is given for them (the
    window stops), nothing half-written stays, and the pin keeps every transaction for the
    round after the disk has room again. ``tmpfs``: a real filesystem that fills (writes
    fail); ``fsync``: a disk that reports it only when flushing, as NFS does."""
    setup = sqlite_setup()
    spool = small_disk(4 * 1024 * 1024) / "spool" if disk == "tmpfs" else setup.spool
    spool.mkdir(parents=True, exist_ok=True)
    capture = SqliteCapture(setup.source, spool)
    writer = sqlite3.connect(setup.database, isolation_level=None)

    def write(count: int) -> None:
        for _ in range(count):
            writer.execute("INSERT INTO orders (payload) VALUES (?)", ("x" * 300,))

    assert capture.flush_position() is not None  # the generation starts
    write(20)
    assert capture.flush_position() is not None
    real_fsync = sqlite_capture.os.fsync

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if disk == "tmpfs":
        filler = fill_disk(spool.parent)
    else:
        monkeypatch.setattr(sqlite_capture.os, "fsync", full)
    [segment] = spool.glob("*.sqlwal")
    size = segment.stat().st_size
    for _ in range(3):
        write(10)
        assert capture.flush_position() is None
        assert segment.stat().st_size == size  # nothing of the failed rounds stays
    if disk == "tmpfs":
        filler.unlink()
    else:
        monkeypatch.setattr(sqlite_capture.os, "fsync", real_fsync)
    write(5)
    assert capture.flush_position() is not None
    capture.close()
    writer.close()
    records = list(read_records(segment.read_bytes()))
    assert records[-1].end == segment.stat().st_size  # no torn record anywhere
    [base] = spool.glob("*.base")
    rebuilt = tmp_path / "rebuilt.db"
    rebuilt.write_bytes(base.read_bytes())
    replay_into(rebuilt, iter([segment.read_bytes()]), None)
    assert setup.rows(rebuilt) == setup.rows() and len(setup.rows()) == 55


def test_a_database_not_in_wal_mode_is_refused_with_the_command_that_switches_it(
    tmp_path: Path,
) -> None:
    database = tmp_path / "rollback.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    source = SqliteSource(name="legacy", type="sqlite", path=str(database), pitr=SqlitePitr())
    with pytest.raises(SourceError, match="journal_mode delete, not wal") as raised:
        SqliteCapture(source, tmp_path / "spool").flush_position()
    assert raised.value.hint == f"switch it once with: sqlite3 {database} 'PRAGMA journal_mode=WAL'"
    missing = SqliteSource(
        name="gone", type="sqlite", path=str(tmp_path / "no.db"), pitr=SqlitePitr()
    )
    assert SqliteCapture(missing, tmp_path / "spool").flush_position() is None  # tried again later
    assert not (tmp_path / "no.db").exists()  # and never created


def test_a_store_serving_an_older_copy_of_a_segment_is_caught_and_failed_over(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path
) -> None:
    """A store that rolls an object back to an earlier copy serves bytes that authenticate
    (drkit sealed them): the ledger's size for that store tells the restore they are old."""
    setup = sqlite_setup()
    with running(setup.archiver()), writing(Writer(setup.database)):
        wait_for(lambda: setup.windows()[0].last_segment is not None, "the first segment")
        time.sleep(1)
        name = setup.windows()[0].last_segment
        assert name is not None
        partial = setup.folder / "east" / WalObject("partial", name).key(setup.plan.name, "orders")
        old = partial.read_bytes()
        time.sleep(1.5)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
    assert partial.read_bytes() != old and setup.windows()[0].last_segment == name
    partial.write_bytes(old)  # the attacker's rollback
    rebuilt = tmp_path / "rebuilt.db"
    result = restore_sqlite_to_moment(
        setup.resources, setup.source, None, target=Target(str(rebuilt)), store_first="east"
    )
    assert setup.rows(rebuilt) == setup.rows()
    assert any(f"east: partial {name}: an older copy" in line for line in result.failovers)
    west = setup.folder / "west" / WalObject("partial", name).key(setup.plan.name, "orders")
    west.write_bytes(old)
    with pytest.raises(IntegrityError, match="an older copy"):
        restore_sqlite_to_moment(
            setup.resources, setup.source, None, target=Target(str(tmp_path / "none.db"))
        )


def test_a_drill_of_every_store_without_any_window_fails_rather_than_drilling_nothing(
    sqlite_setup: Callable[..., SqliteSetup],
) -> None:
    from drkit.cli.drill import drill_exit_code

    setup = sqlite_setup()  # no archiver ever ran: no store has a window
    [result] = drill(setup.resources, all_stores=True)
    assert result.outcome == "failed"
    assert result.error is not None and "no recoverable window" in result.error
    assert drill_exit_code([result]) == drill_exit_code([]) == 1


def test_a_point_in_time_drill_runs_the_plans_sql_checks_on_the_recovered_copy(
    sqlite_setup: Callable[..., SqliteSetup],
) -> None:
    count = "SELECT count(*) FROM orders"
    checks = [
        {"type": "fingerprint"},
        {"type": "sql", "source": "orders", "query": count, "expect": "> 0"},
        {"type": "sql", "source": "orders", "query": count, "expect": "= -1"},
        {"type": "command", "run": ["true"]},
    ]
    setup = sqlite_setup(plan_extra={"drill": {"checks": checks}})
    with running(setup.archiver()), writing(Writer(setup.database)):
        time.sleep(1)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the writes")
    [result] = drill(setup.resources, store="east")
    outcomes = {check.name: check.passed for check in result.checks}
    assert outcomes["fingerprint orders"] is None  # a moment has no fingerprint: a note
    assert outcomes["command true"] is None
    sql = [check for check in result.checks if check.name.startswith("sql ")]
    assert [check.passed for check in sql] == [True, False]
    assert isinstance(sql[0].measured, int) and sql[0].measured > 0
    assert result.outcome == "failed"
