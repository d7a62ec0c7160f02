"""A restart of the PostgreSQL server while `drkit archive` runs: pg_receivewal loses its
connection, the archiver starts it again, and no WAL is lost: the window stays whole and a
restore to the latest moment holds every commit from before and after the restart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from drkit.actions.pitr import PitrRequest, restore_to_moment
from drkit.archive.ledger import store_windows
from drkit.execute import find_program
from drkit.sandboxes import recovered_cluster
from tests.archive.conftest import PitrSetup, _as_server_user, archiving
from tests.archive.test_point_in_time import (
    commit,
    insert_across_segments,
    stream_and_back_up,
    wait_for,
    window_reaches,
)

pytestmark = pytest.mark.slow


def test_a_server_restart_loses_no_wal(
    pitr_setup: Callable[..., PitrSetup], server_folder: Path
) -> None:
    setup = pitr_setup()
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
    with archiving(setup):
        stream_and_back_up(setup)
        insert_across_segments(setup, range(1, 3))
        commit(setup, "INSERT INTO orders VALUES (3)")
        log = str(setup.cluster.folder / "server.log")
        restart = [find_program("pg_ctl"), "-D", str(setup.cluster.data), "-l", log, "-m", "fast"]
        subprocess.run(
            _as_server_user([*restart, "-w", "restart"]), check=True, capture_output=True
        )
        insert_across_segments(setup, range(4, 6))
        last = commit(setup, "INSERT INTO orders VALUES (6)")
        wait_for(lambda: window_reaches(setup, last), "the window to reach past the restart")
    assert [w.problems for w in store_windows(setup.catalog, setup.plan, setup.source)] == [[], []]
    restored = server_folder / "restored"
    result = restore_to_moment(
        setup.resources, PitrRequest(recovered_cluster.RecoveryTarget(None), restored)
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{result.port}/{setup.database}"
        with psycopg.connect(url) as connection:
            rows = [row[0] for row in connection.execute("SELECT id FROM orders ORDER BY id")]
        assert rows == [1, 2, 3, 4, 5, 6]
    finally:
        recovered_cluster.stop(restored)
