"""Two drkit processes on one plan at once: two backups (`drkit backup` takes no lock: two
complete, distinct snapshots that verify; `drkit run` holds the plan's lock: the other runner
exits 5), and a restore of the previous snapshot while a backup is being written."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from drkit.catalog import Catalog
from drkit.errors import ExitCode

from .conftest import Setup, filesystem_stores, fill_postgres, make_setup
from .helpers import (
    TEMP_SUFFIX,
    Observation,
    committed_snapshots,
    finish,
    json_output,
    run_drkit,
    start_drkit,
    watch,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def setup(tmp_path: Path, postgres_database: str) -> Setup:
    fill_postgres(postgres_database, 15_000)
    backend = tmp_path / "backend"
    sources = [
        {"name": "orders-pg", "type": "postgresql", "url": postgres_database},
        {"name": "app-db", "type": "sqlite", "path": str(backend / "app.db")},
        {"name": "app-config", "type": "files", "paths": [str(backend / "config")]},
    ]
    return make_setup(tmp_path, filesystem_stores(tmp_path, "east", "west"), sources=sources)


def test_two_backups_at_once_make_two_complete_snapshots_that_verify(setup: Setup) -> None:
    # A fresh catalog: both processes create its schema at the same moment. They share the
    # plan's lock: the one that does not get it first waits for it (--wait-for-lock).
    waiting = ("backup", "--json", "--wait-for-lock", "2m", str(setup.plan))
    first = start_drkit(setup.catalog, *waiting)
    second = start_drkit(setup.catalog, *waiting)
    results = []
    for process in (first, second):
        completed = finish(process)
        assert completed.returncode == 0, completed.stderr
        results.append(json_output(completed))
    ids = {result["snapshot_id"] for result in results}
    assert len(ids) == 2 and all(r["outcome"] == "ok" for r in results)
    with Catalog.open(setup.catalog) as catalog:
        records = {r.id: r for r in catalog.list_snapshots("test-api")}
        assert set(records) == ids
        assert all(sorted(records[i].complete_stores()) == ["east", "west"] for i in ids)
        assert [run.outcome for run in catalog.list_runs("test-api", "backup")] == ["ok", "ok"]
    for root in setup.stores.values():
        assert set(committed_snapshots(root)) == ids
    checked = run_drkit(setup.catalog, "verify", "--all", str(setup.plan))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": ok (3 objects)") == 4, checked.stdout


def test_two_runners_at_once_one_runs_the_other_is_locked_out_or_follows(setup: Setup) -> None:
    Catalog.open(setup.catalog).close()
    arguments = ("run", "--job", "backup", "--json", str(setup.plan))
    processes = [start_drkit(setup.catalog, *arguments) for _ in range(2)]
    outcomes = [(c.returncode, c.stdout, c.stderr) for c in map(finish, processes)]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes in ([ExitCode.OK, ExitCode.OK], [ExitCode.OK, ExitCode.LOCKED]), outcomes
    with Catalog.open(setup.catalog) as catalog:
        snapshots = catalog.list_snapshots("test-api")
    assert len(snapshots) == codes.count(ExitCode.OK)  # a locked-out runner took none
    for code, stdout, stderr in outcomes:
        if code == ExitCode.LOCKED:
            assert "locked" in stdout + stderr and "Traceback" not in stderr


@pytest.fixture
def restored_database(postgres_database: str, postgres_server: str) -> Iterator[str]:
    name = postgres_database.rsplit("/", 1)[1] + "_restored"
    yield name
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore_while_frozen(
    setup: Setup, backup: subprocess.Popen[str], snapshot: str, database: str
) -> subprocess.CompletedProcess[str]:
    """Freeze the backup mid-upload (SIGSTOP), so the restore surely runs while it is under
    way: its run open, its artifacts half-written, its PostgreSQL snapshot held."""

    def uploading(seen: Observation) -> bool:
        return any(event.endswith(TEMP_SUFFIX) for event in seen.events)

    _, reached = watch(backup, list(setup.stores.values()), uploading, send=signal.SIGSTOP)
    assert reached, "the backup ended before it started uploading"
    target = setup.tmp / "restored"
    return run_drkit(
        setup.catalog, "restore", "--json", "--yes", str(setup.plan), "--snapshot", snapshot,
        "--to", f"orders-pg={database}",
        "--to", f"app-db={target / 'app.db'}", "--to", f"app-config={target / 'config'}",
    )  # fmt: skip


def test_restore_of_the_previous_snapshot_while_a_backup_runs(
    setup: Setup, restored_database: str
) -> None:
    previous = run_drkit(setup.catalog, "backup", "--json", str(setup.plan))
    assert previous.returncode == 0, previous.stderr
    snapshot = json_output(previous)["snapshot_id"]

    backup = start_drkit(setup.catalog, "backup", "--json", str(setup.plan))
    try:
        restored = restore_while_frozen(setup, backup, snapshot, restored_database)
    finally:
        backup.send_signal(signal.SIGCONT)
    assert restored.returncode == 0, restored.stderr
    document = json_output(restored)
    assert document["snapshot_id"] == snapshot
    assert all(item["verified"] for item in document["items"]), document["items"]

    done = finish(backup)
    assert done.returncode == 0, done.stderr
    checked = run_drkit(setup.catalog, "verify", "--all", str(setup.plan))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": ok (3 objects)") == 4, checked.stdout
