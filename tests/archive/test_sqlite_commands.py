"""The SQLite capture as processes: `drkit archive` under steady writes, `drkit status`
showing each store's window and an RPO of seconds, `drkit restore --at` and `drkit drill`
for the SQLite source, `drkit archive` killed with SIGKILL losing nothing, and the log
started over while no archiver ran reported as a gap."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drkit.archive.sqlite_capture import SEGMENT_SUFFIX
from drkit.sources.sqlite_wal import HEADER, read_records
from tests.archive.sqlite_support import (
    SqliteSetup,
    Writer,
    log_incarnation,
    sqlite_setup,
    writing,
)
from tests.archive.test_archive_command import archive_process
from tests.archive.test_point_in_time import wait_for
from tests.archive.test_sqlite_capture import assert_restored_exactly
from tests.faults.helpers import run_drkit
from tests.monitoring.conftest import Receiver, receiver

__all__ = ["receiver", "sqlite_setup"]  # the fixtures

pytestmark = pytest.mark.slow


def test_status_restore_at_and_drill_through_the_commands(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path
) -> None:
    setup = sqlite_setup(heartbeat_every="1s")
    writer = Writer(setup.database, every=0.02)
    with archive_process(setup, setup.plan_file) as start, writing(writer):
        start()
        time.sleep(4)
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the writes")
        status = run_drkit(setup.catalog_url, "status", str(setup.plan_file), "--json")
        text = run_drkit(setup.catalog_url, "status", str(setup.plan_file)).stdout
        report = run_drkit(setup.catalog_url, "report", str(setup.plan_file), "--format", "json")
        markdown = run_drkit(setup.catalog_url, "report", str(setup.plan_file)).stdout
    assert status.returncode in (0, 4), status.stderr  # no snapshot yet: the backup RPO breaches
    [pitr] = json.loads(status.stdout)[0]["pitr"]
    assert pitr["source"] == "orders" and [w["store"] for w in pitr["windows"]] == ["east", "west"]
    assert pitr["breaches"] == []
    assert 0 <= pitr["rpo_seconds"] < 5, pitr
    assert all(w["lag_seconds"] < 5 and w["problems"] == [] for w in pitr["windows"])
    assert "orders point-in-time RPO" in text
    assert report.returncode == 0, report.stderr
    [reported] = json.loads(report.stdout)[0]["point_in_time"]
    assert [w["store"] for w in reported["windows"]] == ["east", "west"]
    assert reported["rpo_seconds"] is not None and reported["rpo_seconds"] < 5
    assert "### Point-in-time recovery" in markdown and "| orders (RPO" in markdown
    window = setup.windows()[0]
    assert window.start is not None and window.end is not None
    target = window.start + (window.end - window.start) * 0.6
    rebuilt = tmp_path / "at.db"
    restored = run_drkit(
        setup.catalog_url,
        "restore",
        str(setup.plan_file),
        "--at",
        target.isoformat(),
        "--to",
        f"orders={rebuilt}",
        "--json",
    )
    assert restored.returncode == 0, restored.stderr
    outcome = json.loads(restored.stdout)
    landed = datetime.fromisoformat(outcome["landed_at"])
    assert_restored_exactly(setup, writer, rebuilt, target, landed)
    again = run_drkit(
        setup.catalog_url,
        "restore",
        str(setup.plan_file),
        "--at",
        target.isoformat(),
        "--to",
        f"orders={rebuilt}",
    )
    assert again.returncode != 0 and "already holds a database" in again.stderr  # no --force
    drilled = run_drkit(setup.catalog_url, "drill", str(setup.plan_file), "--json")
    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
    [drill] = json.loads(drilled.stdout)
    checks = {check["name"]: check for check in drill["checks"]}
    assert (
        checks["no heartbeat after the target"]["passed"] and checks["newest heartbeat"]["passed"]
    )
    assert drill["outcome"] == "ok" and drill["rpo_seconds"] is not None


def captured_incarnation(spool: Path) -> tuple[int, tuple[int, int]] | None:
    """The log header (checkpoint sequence number, salts) in the newest capture segment's
    newest whole header record: the log incarnation the capture had read last."""
    newest = sorted(spool.glob(f"*{SEGMENT_SUFFIX}"))[-1]
    headers = [r.header for r in read_records(newest.read_bytes()) if r.kind == HEADER]
    return (headers[-1].checkpoint, headers[-1].salts) if headers else None


def test_kill_9_of_the_archiver_at_random_moments_loses_nothing(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path
) -> None:
    setup = sqlite_setup()
    chance = random.Random()
    # The application never checkpoints here: while no archiver runs, its own checkpoint may
    # let the log start over, a real gap (the test below). This one proves that a restart
    # continues the generation whenever the log did not start over. The archiver's own
    # checkpoint lets the log start over at the application's next write: killed in the
    # milliseconds before it read the new log's header, it cannot tell that start from one
    # after writes it never saw, and must say so. The test compares the log's header after
    # each kill with the newest one the killed archiver had captured to know which case it got.
    writer = Writer(setup.database, every=0.01, autocheckpoint=100_000)
    started_over = 0
    with archive_process(setup, setup.plan_file) as start:
        with writing(writer):
            process = start()
            wait_for(
                lambda: any(setup.spool.glob("*.base")) or setup.windows()[0].end is not None,
                "the first generation",
            )
            for _ in range(3):
                time.sleep(chance.uniform(0.3, 2.0))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                time.sleep(0.3)  # commits while no archiver runs
                writer.wait_for_commit()  # one that starts the log over if it is to
                if log_incarnation(setup.database) != captured_incarnation(setup.spool):
                    started_over += 1
                process = start()
            # the writer goes on until the last archiver captured: its connection is the
            # last one, and closing it while no archiver pins the log removes the log
            restarted = datetime.now(UTC)
            wait_for(lambda: setup.window_reaches(restarted), "the restarted archiver")
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
    for window in setup.windows():
        if started_over == 0:  # nearly every run: each restart continued the generation
            assert window.problems == [], window.store
            assert len(window.base_backups) == 1, window.store
        else:
            assert all(
                "started over while drkit was not capturing" in problem
                or "is cut off by a gap" in problem
                for problem in window.problems
            ), window.problems
            assert len(window.base_backups) <= 1 + started_over, window.store
    assert_latest_holds_every_row(setup, tmp_path / "latest.db")


def test_the_log_started_over_while_no_archiver_ran_is_reported_as_a_gap(
    sqlite_setup: Callable[..., SqliteSetup], tmp_path: Path, receiver: Receiver
) -> None:
    webhook = {"type": "webhook", "url": f"{receiver.url}/hook", "on": ["objective_breached"]}
    setup = sqlite_setup(plan_extra={"notify": [webhook]})
    writer = Writer(setup.database, every=0.01)
    with archive_process(setup, setup.plan_file) as start:
        with writing(writer):
            process = start()
            # a generation to cut off: killed before its first capture, there is none
            wait_for(lambda: setup.windows()[0].end is not None, "the first generation")
            time.sleep(0.5)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            time.sleep(0.5)
        # the application checkpoints and writes on: its log starts over, unread by drkit
        connection = sqlite3.connect(setup.database, isolation_level=None)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("INSERT INTO orders (payload) VALUES ('after the gap')")
        connection.close()
        start()
        last = datetime.now(UTC)
        wait_for(lambda: setup.window_reaches(last), "the window to reach the last commit")
        status = run_drkit(setup.catalog_url, "status", str(setup.plan_file), "--json")
    [pitr] = json.loads(status.stdout)[0]["pitr"]
    assert status.returncode == 4
    assert any("gap: the write-ahead log" in breach for breach in pitr["breaches"]), pitr[
        "breaches"
    ]
    for window in setup.windows():
        assert len(window.base_backups) == 1  # the window restarts with the new generation
        assert any("cut off by a gap" in problem for problem in window.problems)
    assert_latest_holds_every_row(setup, tmp_path / "latest.db")


def assert_latest_holds_every_row(setup: SqliteSetup, latest: Path) -> None:
    result = run_drkit(
        setup.catalog_url, "restore", str(setup.plan_file), "--latest",
        "--to", f"orders={latest}", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert setup.rows(latest) == setup.rows()
