"""What drkit makes, drkit cleans (DESIGN promise 10). backup, restore and drill of a plan
with PostgreSQL, MariaDB, SQLite and config files, stored in a folder and a restic repository,
drilled in an ephemeral cluster, scratch MariaDB databases and a folder, are each killed with
SIGKILL at 6 random moments per command (DRKIT_KILLS=N sets more), and at more until three
killed runs of each were recorded. After every kill the next command (`drkit status`) leaves
no sandbox process or child, no scratch database or reader, no staged or temporary file, no
object of an uncommitted snapshot in either store, no lease and no `running` run; the killed
runs are recorded `interrupted`, and the compliance report counts killed backups and drills
as failures."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from drkit.catalog import Catalog

from ..conftest import MYSQL_HOST, MYSQL_PORT
from .conftest import Setup, filesystem_stores, fill_postgres, make_setup
from .helpers import (
    PLAN_NAME,
    finish,
    json_output,
    run_drkit,
    start_drkit,
    uncommitted_leftovers,
)
from .test_secrets import restic_repository

pytestmark = [pytest.mark.postgres, pytest.mark.mysql, pytest.mark.restic, pytest.mark.slow]
# Each kill costs a full command and a cleanup; CI runs 6 per command, a soak run more
# (DRKIT_KILLS=50).
KILLS = int(os.environ.get("DRKIT_KILLS", "6"))
#: killed runs that must have been recorded (and then marked interrupted) per kind
RECORDED = 3
SEED = int(os.environ.get("DRKIT_KILL_SEED", "0")) or random.randrange(1 << 30)


@dataclass
class World:
    """The plan, and where a leftover would be: drkit's home (leases), its TMPDIR (scratch
    folders, sandbox clusters), the restore target's folder and the sandbox MariaDB server."""

    setup: Setup
    home: Path
    tmpdir: Path
    restored: Path
    env: dict[str, str]
    killed: dict[str, list[int]] = field(default_factory=dict)

    def drkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_drkit(self.setup.catalog, *args, env=self.env, timeout=300)


@pytest.fixture
def world(
    tmp_path: Path, postgres_database: str, mysql_server: str, mysql_database: str
) -> Iterator[World]:
    fill_postgres(postgres_database, 2000)
    connection = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="")
    with connection.cursor() as cursor:
        database = mysql_database.rsplit("/", 1)[1]
        cursor.execute(f"CREATE TABLE `{database}`.ledger (id INT)")
        cursor.execute(f"INSERT INTO `{database}`.ledger VALUES (1), (2), (3)")
    connection.commit()
    password = "restic-" + secrets.token_hex(6)
    os.environ["DRKIT_KILL_RESTIC_PASSWORD"] = password
    sources = [
        {"name": "orders-pg", "type": "postgresql", "url": postgres_database},
        {"name": "ledger", "type": "mysql", "url": mysql_database},
        {"name": "app-db", "type": "sqlite", "path": str(tmp_path / "backend" / "app.db")},
        {"name": "app-config", "type": "files", "paths": [str(tmp_path / "backend" / "config")]},
    ]
    stores = [
        *filesystem_stores(tmp_path, "disk"),
        {"name": "offsite", "type": "restic", "region": "eu-central-1"}
        | {"repository": restic_repository(tmp_path / "restic", password)}
        | {"password": "env:DRKIT_KILL_RESTIC_PASSWORD"},
    ]
    drill = {
        "sandbox": {"mysql": f"{mysql_server}/"},
        "checks": [
            {"type": "fingerprint"},
            {"type": "sql", "source": "orders-pg", "query": "SELECT count(*) FROM payments"}
            | {"expect": "= 2000"},
            {"type": "sql", "source": "ledger", "query": "SELECT count(*) FROM ledger"}
            | {"expect": "= 3"},
            {"type": "command", "run": ["sh", "-c", "sleep 0.3; true"]},
        ],
    }
    setup = make_setup(tmp_path, stores, sources=sources, drill=drill)
    home = tmp_path / "home"
    # A TMPDIR of the test's own that the sandbox cluster's user may traverse (pytest's may
    # not be), so that the cluster's folder lands there too.
    tmpdir = Path("/tmp") / f"drkit-kill-{secrets.token_hex(4)}"
    tmpdir.mkdir(mode=0o755)
    tmpdir.chmod(0o755)
    env = {"DRKIT_HOME": str(home), "TMPDIR": str(tmpdir), "RESTIC_CACHE_DIR": str(tmp_path / "c")}
    yield World(setup, home, tmpdir, tmp_path / "restored", env)
    os.environ.pop("DRKIT_KILL_RESTIC_PASSWORD", None)
    shutil.rmtree(tmpdir, ignore_errors=True)
    # the restores' targets, and the previous copies every swap keeps beside them
    with connection.cursor() as cursor:
        cursor.execute("SHOW DATABASES LIKE 'drkit\\_kill\\_restored%'")
        for (name,) in cursor.fetchall():
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    connection.close()
    restored = postgres_database.rsplit("/", 1)[1] + "_restored"
    server = postgres_database.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as pg:
        query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
        for (name,) in pg.execute(query, (restored,)).fetchall():
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore_args(world: World, postgres_target: str) -> tuple[str, ...]:
    return (
        *("restore", "--yes", "--force", str(world.setup.plan)),
        *("--to", f"orders-pg={postgres_target}", "--to", "ledger=drkit_kill_restored"),
        *("--to", f"app-db={world.restored / 'app.db'}"),
        *("--to", f"app-config={world.restored / 'config'}"),
    )


# --- what a dead drkit may have left ----------------------------------------------------------


def leases(world: World) -> list[dict[str, Any]]:
    folder = world.home / "leases"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []


def marked_processes(world: World) -> list[str]:
    """Processes started by a drkit of this test: carrying a scratch marker, or a sandbox
    cluster living in its TMPDIR."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ours = b"DRKIT_OWNER=" in environ and str(world.tmpdir).encode() in environ
        if ours or str(world.tmpdir).encode() in command:
            shown = command.replace(b"\0", b" ").decode("utf-8", "replace")
            found.append(f"{entry.name}: {shown[:80]}")
    return found


def mysql_leftovers(names: set[str], readers: set[str]) -> list[str]:
    connection = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            databases = {str(row[0]) for row in cursor.fetchall()}
            cursor.execute("SELECT User FROM mysql.user")
            users = {str(row[0]) for row in cursor.fetchall()}
    finally:
        connection.close()
    return sorted((databases & names) | (users & readers))


def store_leftovers(world: World) -> list[str]:
    """Objects of snapshots without a manifest, in the folder store and the restic one."""
    from drkit.plan.loader import load_plan
    from drkit.stores import make_store

    found = uncommitted_leftovers(world.setup.stores["disk"])
    restic = make_store(load_plan(world.setup.plan).store("offsite"))
    keys = restic.list(f"{PLAN_NAME}/snapshots/")
    committed = {key.rsplit("/", 1)[0] for key in keys if key.endswith("/manifest.json")}
    return found + [key for key in keys if key.rsplit("/", 1)[0] not in committed]


def assert_nothing_left(world: World, named: tuple[set[str], set[str]], label: str) -> None:
    assert leases(world) == [], label
    assert store_leftovers(world) == [], label
    assert list(world.tmpdir.iterdir()) == [], label
    assert marked_processes(world) == [], label
    assert mysql_leftovers(*named) == [], label
    if world.restored.exists():
        assert not list(world.restored.glob(".*.drkit-restore")), label
    with Catalog.open(world.setup.catalog) as catalog:
        running = [run for run in catalog.list_runs(PLAN_NAME) if run.outcome == "running"]
    assert running == [], label


# --- killing ----------------------------------------------------------------------------------


def kill_at(world: World, args: tuple[str, ...], moment: float) -> tuple[int | None, float]:
    """Start drkit, SIGKILL it ``moment`` seconds in: its pid (None when it finished first)
    and how long it ran."""
    process = start_drkit(world.setup.catalog, *args, env=world.env)
    started = time.monotonic()
    while process.poll() is None and time.monotonic() < started + moment:
        time.sleep(0.005)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    elapsed = time.monotonic() - started
    completed = finish(process)
    if completed.returncode == -signal.SIGKILL:
        return process.pid, elapsed
    assert completed.returncode == 0, completed.stdout + completed.stderr  # it finished first
    return None, elapsed


def time_a_run(world: World, args: tuple[str, ...]) -> tuple[float, float]:
    """Run ``args`` to its end: when its first lease appeared (start-up is over: Python, the
    plan, the catalog) and how long it took."""
    process = start_drkit(world.setup.catalog, *args, env=world.env)
    started = time.monotonic()
    first_lease = None
    while process.poll() is None:
        if first_lease is None and leases(world):
            first_lease = time.monotonic() - started
        time.sleep(0.005)
    duration = time.monotonic() - started
    completed = finish(process)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert first_lease is not None, "the run took no lease"
    return first_lease, duration


def kill_repeatedly(world: World, kind: str, args: tuple[str, ...]) -> list[int]:
    """Time one full run, then kill ``args`` at KILLS random moments between the end of its
    start-up and its end; after every kill, check that the next command (`drkit status`)
    left nothing. Until RECORDED of the killed runs were recorded (a restore records its run
    only once the snapshot is located), further kills aim at the later half of the run."""
    first_lease, duration = time_a_run(world, args)
    chooser = random.Random(f"{SEED}-{kind}")
    killed: list[int] = []
    left_something = 0
    recorded = 0
    for attempt in range(KILLS * 4):
        if len(killed) >= KILLS and recorded >= RECORDED:
            break
        earliest = first_lease if len(killed) < KILLS else (first_lease + duration) / 2
        moment = chooser.uniform(earliest, duration)
        label = f"{kind} killed at {moment:.2f}s of {duration:.2f}s (seed {SEED}, try {attempt})"
        pid, elapsed = kill_at(world, args, moment)
        if pid is None:  # this run was faster (a noisy machine): aim within its time
            first_lease, duration = first_lease * elapsed / duration, elapsed
            continue
        killed.append(pid)
        found = leases(world)
        left_something += bool(found)
        names = {d for lease in found for d in lease["data"].get("databases", [])}
        readers = {r for lease in found for r in lease["data"].get("readers", {}).values()}
        status = world.drkit("status", "--json", str(world.setup.plan))
        assert status.returncode in (0, 4), status.stderr
        assert_nothing_left(world, (names, readers), label)
        recorded += was_recorded_interrupted(world, kind, pid)
    assert len(killed) >= KILLS, f"{kind} finished before most kill moments ({duration:.2f}s)"
    assert recorded >= RECORDED, f"{kind}: only {recorded} killed runs were recorded"
    # most kills land while something is leased; a third proves the moments are not all idle
    assert left_something >= max(2, KILLS // 3), f"{kind}: kills left nothing ({left_something})"
    world.killed[kind] = killed
    print(
        f"{kind}: {len(killed)} kills between {first_lease:.2f}s and {duration:.2f}s, "
        f"{left_something} left leases behind, {recorded} recorded (seed {SEED})"
    )
    return killed


def was_recorded_interrupted(world: World, kind: str, pid: int) -> bool:
    with Catalog.open(world.setup.catalog) as catalog:
        runs = catalog.list_runs(PLAN_NAME, kind)
    return any(run.pid == pid and run.outcome == "interrupted" for run in runs)


def assert_killed_runs_interrupted(world: World, kind: str) -> list[Any]:
    """The runs of killed processes: none left running; interrupted unless the kill came
    after the run was recorded complete (while drkit printed its result). The interrupted."""
    with Catalog.open(world.setup.catalog) as catalog:
        runs = [run for run in catalog.list_runs(PLAN_NAME, kind) if run.pid in world.killed[kind]]
    assert {run.outcome for run in runs} <= {"interrupted", "ok"}, kind
    interrupted = [run for run in runs if run.outcome == "interrupted"]
    # kill_repeatedly killed until RECORDED were recorded; this reads them back
    assert len(interrupted) >= RECORDED, f"{kind}: only {len(interrupted)} killed runs recorded"
    print(f"{kind}: {len(interrupted)} runs of killed processes recorded interrupted")
    return interrupted


@pytest.mark.timeout(1800)  # 60 kills and as many checks, on a machine shared with others
def test_kill_9_anywhere_in_backup_restore_and_drill_leaves_nothing_behind(
    world: World, postgres_database: str, postgres_server: str
) -> None:
    kill_repeatedly(world, "backup", ("backup", str(world.setup.plan)))
    target = postgres_database.rsplit("/", 1)[1] + "_restored"
    kill_repeatedly(world, "restore", restore_args(world, target))
    kill_repeatedly(world, "drill", ("drill", str(world.setup.plan)))

    backups = assert_killed_runs_interrupted(world, "backup")
    assert_killed_runs_interrupted(world, "restore")
    drills = assert_killed_runs_interrupted(world, "drill")
    report = world.drkit("report", str(world.setup.plan), "--format", "json", "--since", "1d")
    assert report.returncode == 0, report.stderr
    [document] = json_output(report)
    failures = {(f["kind"], f["at"]) for f in document["failures"] if f["outcome"] == "interrupted"}
    with Catalog.open(world.setup.catalog) as catalog:
        recorded = {drill.run_id for drill in catalog.list_drills(PLAN_NAME)}
    # A drill killed after recording its result (while closing its run) counts by that result.
    unrecorded = [run for run in drills if run.id not in recorded]
    for kind, runs in (("backup", backups), ("drill", unrecorded)):
        assert {(kind, run.started_at.isoformat()) for run in runs} <= failures, kind
    assert document["drills"]["interrupted"] == len(unrecorded)

    after = world.drkit("drill", "--json", str(world.setup.plan))  # all still works
    assert after.returncode == 0, after.stdout + after.stderr
    assert json_output(after)[0]["outcome"] == "ok"
    import psycopg

    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
