"""Sources restored side by side: the same databases, files and SQLite file as one after the
other, against the real PostgreSQL and MariaDB servers; a source that fails stops the ones not
started, lets the running ones finish, and says what became of each."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from drkit.actions.backup import backup
from drkit.actions.resources import Resources, open_resources
from drkit.actions.restore import RestoreRequest, execute_restore, prepare_restore
from drkit.actions.side_by_side import (
    DONE,
    FAILED,
    NOT_STARTED,
    STOPPED,
    Stopped,
    run_side_by_side,
)
from drkit.catalog import Catalog
from drkit.errors import RefusedError
from drkit.outcome import Outcome

from .conftest import load, make_backend, plan_document
from .test_servers_end_to_end import (  # the fixtures: the same data as the end-to-end test
    mysql_engine_dump,
    mysql_source,  # noqa: F401
    pg_engine_dump,
    pg_source,  # noqa: F401
)

# --- the runner on its own -----------------------------------------------------------------------


def test_two_workers_run_two_items_at_once_and_one_worker_never_does() -> None:
    together = threading.Barrier(2, timeout=5)

    def meet(item: str, stop: threading.Event) -> None:
        together.wait()

    assert run_side_by_side(["a", "b"], meet, workers=2).states == [DONE, DONE]
    together.reset()
    with pytest.raises(threading.BrokenBarrierError):
        run_side_by_side(["a", "b"], meet, workers=1).raise_first(["a", "b"], None)


def test_a_failure_starts_nothing_more_stops_the_running_and_is_raised_first() -> None:
    started: list[str] = []
    failing = threading.Event()

    def work(item: str, stop: threading.Event) -> None:
        started.append(item)
        if item == "slow":
            failing.wait(5)
            if not stop.wait(5):
                raise AssertionError("never told to stop")
            raise Stopped(item)
        failing.set()
        raise ValueError(f"{item} broke")

    items = ["slow", "broken", "later"]
    run = run_side_by_side(items, work, workers=2)
    assert run.states == [STOPPED, FAILED, NOT_STARTED]
    assert started == ["slow", "broken"]
    with pytest.raises(ValueError, match="broken broke"):
        run.raise_first(items, str)


def test_one_worker_runs_in_order_and_stops_at_the_first_failure() -> None:
    seen: list[str] = []

    def work(item: str, stop: threading.Event) -> None:
        seen.append(threading.current_thread().name)
        if item == "b":
            raise ValueError("b broke")

    run = run_side_by_side(["a", "b", "c"], work, workers=1)
    assert run.states == [DONE, FAILED, NOT_STARTED]
    assert seen == [threading.current_thread().name] * 2  # in the calling thread


# --- a whole plan against the real servers --------------------------------------------------------


@pytest.fixture
def plan_world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    postgres_database = request.getfixturevalue("pg_source")
    mysql_database = request.getfixturevalue("mysql_source")
    backend = make_backend(tmp_path / "backend")
    sources = [
        {"name": "orders-db", "type": "postgresql", "url": postgres_database},
        {"name": "sessions", "type": "sqlite", "path": str(backend["database"])},
        {"name": "ledger-db", "type": "mysql", "url": mysql_database},
        {"name": "config", "type": "files", "paths": [str(backend["config"])]},
    ]
    stores = [
        {"name": "nfs", "type": "filesystem", "path": str(tmp_path / "nfs"), "region": "here"}
    ]
    document = plan_document(tmp_path, stores, sources=sources)
    created: list[tuple[str, str]] = []
    with Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}") as catalog:
        resources = open_resources(load(document), catalog)
        assert backup(resources).outcome is Outcome.OK
        yield {
            "resources": resources,
            "tmp": tmp_path,
            "pg": postgres_database,
            "mysql": mysql_database,
            "created": created,
        }
    server = postgres_database.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as pg:
        for kind, name in created:
            if kind == "pg":
                pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
    my = pymysql.connect(host="127.0.0.1", user="root", password="")
    with my.cursor() as cursor:
        for kind, name in created:
            if kind == "mysql":
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    my.close()


def new_targets(world: dict[str, Any], label: str) -> dict[str, str]:
    pg_name = f"drkit_side_{label}_{secrets.token_hex(3)}"
    my_name = f"drkit_side_{label}_{secrets.token_hex(3)}"
    world["created"] += [("pg", pg_name), ("mysql", my_name)]
    return {
        "orders-db": pg_name,
        "ledger-db": my_name,
        "sessions": str(world["tmp"] / label / "sessions.db"),
        "config": str(world["tmp"] / label / "config"),
    }


def restored_state(world: dict[str, Any], targets: dict[str, str]) -> dict[str, object]:
    pg_server, my_server = world["pg"].rsplit("/", 1)[0], world["mysql"].rsplit("/", 1)[0]
    connection = sqlite3.connect(targets["sessions"])
    rows = connection.execute("SELECT * FROM orders ORDER BY id").fetchall()
    connection.close()
    root = Path(targets["config"])
    files = {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    return {
        "pg": pg_engine_dump(f"{pg_server}/{targets['orders-db']}"),
        "mysql": mysql_engine_dump(f"{my_server}/{targets['ledger-db']}"),
        "sqlite": rows,
        "files": files,
    }


def restore(resources: Resources, targets: dict[str, str], workers: int) -> list[str]:
    """Restore every source to ``targets``; the names of the threads the loads ran in."""
    threads: list[str] = []

    def on_phase(phase: str, source: str) -> None:
        if phase == "load":
            threads.append(threading.current_thread().name)

    prepared = prepare_restore(resources, RestoreRequest(targets=targets))
    execute_restore(resources, prepared, force=False, on_phase=on_phase, workers=workers)
    for item in prepared.items:
        assert not item.differences, (item.source, item.differences)
        assert set(item.phases) == {"fetch", "decrypt", "load", "verify"}, item.source
    assert prepared.phases["load"] > 0 and prepared.phases["fetch"] > 0
    return threads


@pytest.mark.postgres
@pytest.mark.mysql
@pytest.mark.slow
def test_side_by_side_restores_the_same_data_as_one_after_the_other(
    plan_world: dict[str, Any],
) -> None:
    resources = plan_world["resources"]
    one_by_one = new_targets(plan_world, "seq")
    side_by_side = new_targets(plan_world, "par")
    threads = restore(resources, one_by_one, workers=1)
    assert set(threads) == {threading.current_thread().name}
    threads = restore(resources, side_by_side, workers=2)
    assert len(set(threads)) == 2 and all(name.startswith("restore") for name in threads)
    expected = restored_state(plan_world, one_by_one)
    assert restored_state(plan_world, side_by_side) == expected
    assert expected["pg"] == pg_engine_dump(plan_world["pg"])
    assert expected["mysql"] == mysql_engine_dump(plan_world["mysql"])


@pytest.mark.postgres
@pytest.mark.mysql
@pytest.mark.slow
def test_a_failing_source_is_raised_the_running_one_finishes_and_the_rest_never_start(
    plan_world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    resources = plan_world["resources"]
    targets = new_targets(plan_world, "fail")
    prepared = prepare_restore(resources, RestoreRequest(targets=targets))
    # after the safety rules passed, something takes the SQLite target: its load refuses
    Path(targets["sessions"]).parent.mkdir(parents=True)
    sqlite3.connect(targets["sessions"]).executescript("CREATE TABLE taken (id INTEGER);")
    caplog.set_level(logging.WARNING, logger="drkit.actions.side_by_side")
    with pytest.raises(RefusedError, match="became non-empty after the restore began"):
        execute_restore(resources, prepared, force=False, workers=2)
    orders = {item.source: item for item in prepared.items}
    # orders-db started beside sessions and ran to its end, restored and verified
    assert "load" in orders["orders-db"].phases and not orders["orders-db"].differences
    pg_server = plan_world["pg"].rsplit("/", 1)[0]
    assert pg_engine_dump(f"{pg_server}/{targets['orders-db']}") == pg_engine_dump(plan_world["pg"])
    # the sources after the failure were never loaded: their targets are untouched
    assert "load" not in orders["ledger-db"].phases and "load" not in orders["config"].phases
    assert not Path(targets["config"]).exists()
    with (
        pymysql.connect(host="127.0.0.1", user="root", password="") as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SHOW DATABASES LIKE %s", (targets["ledger-db"],))
        assert cursor.fetchall() == ()
    said = caplog.text
    assert "restore of orders-db: finished before the failure" in said
    assert "restore of ledger-db: not started: another source failed first" in said
    assert "restore of config: not started" in said
