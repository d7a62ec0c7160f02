"""MariaDB point-in-time end to end, as processes: `drkit archive` under steady writes,
`drkit status` showing each store's window, `drkit restore --at` into a new database holding
exactly the transactions committed by then, and `drkit archive` killed with SIGKILL at random
moments losing nothing."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.archive.ledger import binlog_store_windows
from tests.archive.conftest import BinlogSetup
from tests.archive.test_archive_command import archive_process
from tests.archive.test_binlog_archive import (
    BinlogLoad,
    server_binlogs,
    stored_binlogs,
    window_reaches,
)
from tests.archive.test_point_in_time import wait_for
from tests.faults.helpers import run_drkit, write_plan

pytestmark = pytest.mark.slow


@pytest.fixture
def new_database(
    binlog_setup: Callable[..., BinlogSetup],
) -> Iterator[Callable[[BinlogSetup], str]]:
    """Names for restore targets, dropped in teardown."""
    made: list[tuple[BinlogSetup, str]] = []

    def make(setup: BinlogSetup) -> str:
        name = f"{setup.database}_restored_{len(made)}"
        made.append((setup, name))
        return name

    yield make
    for setup, name in made:
        setup.server.execute(f"DROP DATABASE IF EXISTS {name}")


def restored_rows(setup: BinlogSetup, database: str) -> list[int]:
    return [
        int(row[0]) for row in setup.server.execute(f"SELECT id FROM {database}.orders ORDER BY id")
    ]


def test_status_shows_the_window_and_restore_at_holds_exactly_the_commits_before(
    binlog_setup: Callable[..., BinlogSetup], new_database: Callable[[BinlogSetup], str]
) -> None:
    setup = binlog_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    with archive_process(setup, plan_file) as start, BinlogLoad(setup) as load:
        start()
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        backed_up = run_drkit(setup.catalog_url, "backup", str(plan_file))
        assert backed_up.returncode == 0, backed_up.stderr
        time.sleep(1.5)
        held_from, held_until = load.hold(2.6)  # no commit in this stretch
        before = [number for number, _, committed in load.committed if committed <= held_from]
        time.sleep(1.5)
        last = load.committed[-1][2]
        wait_for(lambda: window_reaches(setup, last), "the window to reach the load")
        status = run_drkit(setup.catalog_url, "status", str(plan_file), "--json")
    document = json.loads(status.stdout)[0]
    [pitr] = document["pitr"]
    assert pitr["source"] == "ledger" and pitr["breaches"] == []
    assert [w["store"] for w in pitr["windows"]] == ["east", "west"]
    assert all(datetime.fromisoformat(w["to"]) >= last for w in pitr["windows"])
    assert pitr["rpo_seconds"] == document["rpo_seconds"]
    text = run_drkit(setup.catalog_url, "status", str(plan_file)).stdout
    assert "ledger point-in-time RPO" in text
    # a moment whose whole second lies inside the pause (the binlog tells seconds only)
    target = datetime.fromtimestamp(math.ceil(held_from.timestamp()), UTC) + timedelta(seconds=0.5)
    assert target + timedelta(seconds=0.5) < held_until
    database = new_database(setup)
    result = run_drkit(
        setup.catalog_url,
        "restore",
        str(plan_file),
        "--at",
        target.isoformat(),
        "--to",
        f"ledger={database}",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["database"] == database and outcome["binlog_files"]
    assert set(outcome["phases"]) >= {"locate", "fetch", "load", "fetch binlog", "replay"}
    assert before and restored_rows(setup, database) == before
    [snapshot] = setup.catalog.list_snapshots(setup.plan.name, status="complete")
    assert snapshot.artifacts[0].fingerprint["tables"]["orders"] < len(before)  # binlog replayed
    assert len(load.committed) > len(before)  # rows after the moment exist, and were left out


def test_kill_9_of_the_archiver_at_random_moments_loses_no_binlog(
    binlog_setup: Callable[..., BinlogSetup], new_database: Callable[[BinlogSetup], str]
) -> None:
    setup = binlog_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    chance = random.Random()
    with archive_process(setup, plan_file) as start:
        with BinlogLoad(setup) as load:
            process = start()
            wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
            assert run_drkit(setup.catalog_url, "backup", str(plan_file)).returncode == 0
            for _ in range(3):
                time.sleep(chance.uniform(0.5, 3.0))
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                setup.server.execute("FLUSH BINARY LOGS")  # a file completes while it is down
                process = start()
            time.sleep(2)
        last = load.committed[-1][2]
        wait_for(lambda: window_reaches(setup, last), "the window to reach the last commit")
    for window in binlog_store_windows(setup.catalog, setup.plan, setup.source):
        assert window.problems == [], window.store
    [snapshot] = setup.catalog.list_snapshots(setup.plan.name, status="complete")
    first = snapshot.artifacts[0].fingerprint["binlog"]["file"]
    server = server_binlogs(setup)
    for store in ("east", "west"):
        held = stored_binlogs(setup, store)
        assert all(held.get(name) == data for name, data in server.items() if name >= first)
    database = new_database(setup)
    result = run_drkit(
        setup.catalog_url, "restore", str(plan_file), "--latest", "--to", f"ledger={database}"
    )
    assert result.returncode == 0, result.stderr
    assert "binlog files" in result.stdout
    assert restored_rows(setup, database) == [number for number, _, _ in load.committed]


def test_restore_at_a_moment_before_every_dump_names_the_window(
    binlog_setup: Callable[..., BinlogSetup], tmp_path: Path
) -> None:
    setup = binlog_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    early = datetime.now(UTC) - timedelta(hours=1)
    with archive_process(setup, plan_file) as start:
        start()
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        assert run_drkit(setup.catalog_url, "backup", str(plan_file)).returncode == 0
        moment = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, moment), "the window to reach the backup")
    result = run_drkit(
        setup.catalog_url, "restore", str(plan_file), "--at", early.isoformat(), "--to", "ledger=x"
    )
    assert result.returncode == 2, result.stderr
    assert "outside every store's recoverable window" in result.stderr
    assert "east: " in result.stderr


def test_a_restart_of_the_server_under_load_loses_no_binlog(
    binlog_setup: Callable[..., BinlogSetup], new_database: Callable[[BinlogSetup], str]
) -> None:
    setup = binlog_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    committed: list[int] = []
    with archive_process(setup, plan_file) as start:
        start()
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        assert run_drkit(setup.catalog_url, "backup", str(plan_file)).returncode == 0
        for number in range(1, 6):
            setup.execute(f"INSERT INTO orders VALUES ({number}, 'before the restart')")
            committed.append(number)
        setup.server.stop()  # a new binlog file on start; the archiver's receiver dies
        time.sleep(3)
        setup.server.start()
        for number in range(6, 11):
            setup.execute(f"INSERT INTO orders VALUES ({number}, 'after the restart')")
            committed.append(number)
        last = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, last), "the window to pass the restart")
    for window in binlog_store_windows(setup.catalog, setup.plan, setup.source):
        assert window.problems == [], window.store
    database = new_database(setup)
    result = run_drkit(
        setup.catalog_url, "restore", str(plan_file), "--latest", "--to", f"ledger={database}"
    )
    assert result.returncode == 0, result.stderr
    assert restored_rows(setup, database) == committed


def test_restore_to_a_gtid_holds_exactly_the_transactions_up_to_it(
    binlog_setup: Callable[..., BinlogSetup], new_database: Callable[[BinlogSetup], str]
) -> None:
    setup = binlog_setup()
    plan_file = write_plan(setup.folder / "plan.yaml", setup.document)
    setup.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    gtids: list[str] = []
    with archive_process(setup, plan_file) as start:
        start()
        wait_for(lambda: any(setup.spool.glob("mariadb-bin.*")), "mariadb-binlog to stream")
        backed_up = run_drkit(setup.catalog_url, "backup", str(plan_file))
        assert backed_up.returncode == 0, backed_up.stderr
        for number in range(1, 9):
            setup.execute(f"INSERT INTO orders VALUES ({number}, 'by gtid')")
            [(position,)] = setup.execute("SELECT @@gtid_binlog_pos")
            gtids.append(str(position))
        last = datetime.now(UTC)
        wait_for(lambda: window_reaches(setup, last), "the window to reach the inserts")
    target = new_database(setup)
    restored = run_drkit(
        setup.catalog_url,
        "restore",
        str(plan_file),
        "--gtid",
        gtids[4],
        "--to",
        f"ledger={target}",
        "--json",
    )
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["target"] == gtids[4]
    assert restored_rows(setup, target) == [1, 2, 3, 4, 5]
    domain, server, sequence = gtids[-1].split("-")
    beyond = f"{domain}-{server}-{int(sequence) + 100}"
    missing = run_drkit(
        setup.catalog_url,
        "restore",
        str(plan_file),
        "--gtid",
        beyond,
        "--to",
        f"ledger={new_database(setup)}",
    )
    assert missing.returncode == 2, missing.stderr
    assert f"transaction {beyond} is not in the archived binlog" in missing.stderr
    mixed = run_drkit(setup.catalog_url, "restore", str(plan_file), "--gtid", gtids[0], "--latest")
    assert mixed.returncode == 2 and "--gtid excludes" in mixed.stderr
