"""The commands end to end, as processes: `drkit archive` under a steady write load, `drkit
status` showing each store's window, `drkit restore --at` holding exactly what was committed
by then, and `drkit archive` killed with SIGKILL at random moments losing nothing."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from drkit.archive.ledger import store_windows
from drkit.sandboxes import recovered_cluster
from tests.archive.conftest import BinlogSetup, PitrSetup
from tests.archive.test_point_in_time import commit, stream_and_back_up, wait_for, window_reaches
from tests.faults.helpers import child_environment, drkit_argv, run_drkit, write_plan

pytestmark = pytest.mark.slow


@contextmanager
def archive_process(
    setup: PitrSetup | BinlogSetup, plan_file: Path
) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Starts `drkit archive PLAN` as a child (again, after a kill); stopped with SIGTERM."""
    log = (setup.folder / "archive.log").open("a")
    running: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            drkit_argv(setup.catalog_url, "archive", str(plan_file)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            text=True,
            env=child_environment(),
        )
        running.append(process)
        return process

    try:
        yield start
    finally:
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
        log.close()


class WriteLoad:
    """Inserts numbered rows, one transaction each, until stopped; knows what committed, each
    row with the server's clock before its commit began and after it was done."""

    def __init__(self, setup: PitrSetup):
        self.setup = setup
        self.committed: list[tuple[int, datetime]] = []  # (row, after its commit)
        self.began: list[datetime] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.setup.cluster.connect(self.setup.database) as connection:
            number = 0
            while not self._stop.is_set():
                number += 1
                row = connection.execute(
                    "INSERT INTO orders VALUES (%s, 'steady') RETURNING clock_timestamp()",
                    (number,),
                ).fetchone()
                after = connection.execute("SELECT clock_timestamp()").fetchone()
                assert row is not None and after is not None
                self.began.append(row[0])
                self.committed.append((number, after[0]))
                time.sleep(0.02)

    def __enter__(self) -> WriteLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def restored_rows(port: int, database: str) -> list[int]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{database}") as connection:
        return [row[0] for row in connection.execute("SELECT id FROM orders ORDER BY id")]


def test_status_shows_the_window_under_load_and_restore_at_holds_exactly_the_commits_before(
    pitr_setup: Callable[..., PitrSetup], server_folder: Path
) -> None:
    setup = pitr_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with archive_process(setup, plan_file) as start, WriteLoad(setup) as load:
        start()
        wait_for(lambda: any(setup.spool.glob("*.partial")), "pg_receivewal to stream")
        backed_up = run_drkit(setup.catalog_url, "backup", str(plan_file))
        assert backed_up.returncode == 0, backed_up.stderr
        time.sleep(3)
        checkpoint = load.committed[-1][1]
        wait_for(lambda: window_reaches(setup, checkpoint), "the window to reach the load")
        status = run_drkit(setup.catalog_url, "status", str(plan_file), "--json")
    document = json.loads(status.stdout)[0]
    assert status.returncode == 0, document["breaches"]
    [pitr] = document["pitr"]
    assert [w["store"] for w in pitr["windows"]] == ["east", "west"]
    assert all(datetime.fromisoformat(w["to"]) >= checkpoint for w in pitr["windows"])
    assert pitr["rpo_seconds"] == document["rpo_seconds"]
    text = run_drkit(setup.catalog_url, "status", str(plan_file)).stdout
    assert "orders point-in-time RPO" in text and "east 20" in text
    middle = len(load.committed) // 2
    # between row middle's commit (done by committed[middle]) and the next one's (began later)
    target = load.committed[middle][1] + (load.began[middle + 1] - load.committed[middle][1]) / 2
    expected = [number for number, _ in load.committed[: middle + 1]]
    restored = server_folder / "restored"
    result = run_drkit(
        setup.catalog_url,
        "restore",
        str(plan_file),
        "--at",
        target.isoformat(),
        "--to",
        f"orders={restored}",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    try:
        assert restored_rows(outcome["port"], setup.database) == expected
    finally:
        recovered_cluster.stop(restored)


def test_kill_9_of_the_archiver_at_random_moments_loses_no_wal(
    pitr_setup: Callable[..., PitrSetup], server_folder: Path
) -> None:
    setup = pitr_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    commit(setup, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
    chance = random.Random()
    with archive_process(setup, plan_file) as start:
        with WriteLoad(setup) as load:
            process = start()
            stream_and_back_up(setup)
            for _ in range(3):
                time.sleep(chance.uniform(0.5, 3.0))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                commit(setup, "SELECT pg_switch_wal()")  # a segment completes while it is down
                process = start()
            time.sleep(2)
        last = load.committed[-1]
        wait_for(lambda: window_reaches(setup, last[1]), "the window to reach the last commit")
    for window in store_windows(setup.catalog, setup.plan, setup.source):
        assert window.problems == [], window.store
    restored = server_folder / "restored"
    result = run_drkit(
        setup.catalog_url,
        "restore",
        str(plan_file),
        "--latest",
        "--to",
        f"orders={restored}",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    try:
        assert restored_rows(json.loads(result.stdout)["port"], setup.database) == [
            number for number, _ in load.committed
        ]
    finally:
        recovered_cluster.stop(restored)
