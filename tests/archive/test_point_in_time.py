"""End to end against a real cluster: a physical base backup through the snapshot pipeline,
`drkit archive` shipping WAL to two filesystem stores, the recoverable window from the
continuity ledger, and a restore to a moment between two commits holding exactly the first."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from drkit.actions.backup import backup
from drkit.actions.pitr import PitrRequest, restore_to_moment
from drkit.archive.ledger import store_windows
from drkit.monitoring.metrics import collect_metrics, render_metrics
from drkit.sandboxes import recovered_cluster
from tests.archive.conftest import PitrSetup, archiving

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def commit(setup: PitrSetup, sql: str) -> datetime:
    """Run one statement in its own transaction; the server's clock right after the commit."""
    with setup.cluster.connect(setup.database) as connection:
        connection.execute(sql)
        moment: datetime = connection.execute("SELECT clock_timestamp()").fetchone()[0]
    return moment


def stream_and_back_up(setup: PitrSetup) -> None:
    """Once pg_receivewal streams, a base backup (its WAL is then surely archived)."""
    wait_for(lambda: any(setup.spool.glob("*.partial")), "pg_receivewal to stream")
    assert backup(setup.resources).outcome.value == "ok"


def insert_across_segments(setup: PitrSetup, numbers: range) -> None:
    """One row per number, each followed by a WAL switch: a completed segment per row."""
    for number in numbers:
        commit(setup, f"INSERT INTO orders VALUES ({number})")
        commit(setup, "SELECT pg_switch_wal()")


def window_reaches(setup: PitrSetup, moment: datetime) -> bool:
    windows = store_windows(setup.catalog, setup.plan, setup.source)
    return all(w.end is not None and w.end >= moment for w in windows)


def test_restore_to_a_moment_between_two_commits_holds_exactly_the_first(
    pitr_setup: Callable[..., PitrSetup], server_folder: Path
) -> None:
    setup = pitr_setup()
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with archiving(setup):
        wait_for(lambda: any(setup.spool.glob("*.partial")), "pg_receivewal to stream")
        result = backup(setup.resources)
        assert result.outcome.value == "ok", result.error
        first = commit(setup, "INSERT INTO orders VALUES (1, 'before the target')")
        time.sleep(1.0)
        target = commit(setup, "SELECT 1")  # a moment between the two commits
        time.sleep(1.0)
        second = commit(setup, "INSERT INTO orders VALUES (2, 'after the target')")
        wait_for(lambda: window_reaches(setup, second), "the window to reach the second commit")
    windows = store_windows(setup.catalog, setup.plan, setup.source)
    assert [w.store for w in windows] == ["east", "west"]
    for window in windows:
        assert window.problems == []
        assert window.start is not None and window.start <= first < target < second
    metrics = render_metrics(collect_metrics(setup.catalog, [setup.plan]))
    for store in ("east", "west"):
        labels = f'plan="test-api",source="orders",store="{store}"'
        assert f"drkit_wal_window_problems{{{labels}}} 0.0" in metrics
        lag = re.search(rf"drkit_wal_archive_lag_seconds{{{labels}}} (\S+)", metrics)
        assert lag is not None and math.isfinite(float(lag.group(1)))
        lsn = re.search(rf"drkit_wal_last_archived_lsn_bytes{{{labels}}} (\S+)", metrics)
        assert lsn is not None and float(lsn.group(1)) > 0
    restored = server_folder / "restored"
    outcome = restore_to_moment(
        setup.resources,
        PitrRequest(recovered_cluster.RecoveryTarget(target), restored),
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{outcome.port}/{setup.database}"
        with psycopg.connect(url) as connection:
            rows = connection.execute("SELECT id, note FROM orders ORDER BY id").fetchall()
        assert rows == [(1, "before the target")]
        assert outcome.wal_files >= 1
    finally:
        recovered_cluster.stop(restored)
