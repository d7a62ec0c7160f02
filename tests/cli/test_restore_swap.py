"""Restores that cannot destroy, on the real PostgreSQL server through the command line:
``--force`` loads beside the target and swaps by renaming, keeping the replaced database (or
removing it with ``--drop-previous``); system databases are refused; a restore that fails,
is interrupted or is killed leaves the target exactly as it was and no copy behind."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from drkit.cli import main
from drkit.errors import ExitCode

from ..actions.conftest import plan_document

pytestmark = pytest.mark.postgres


def _databases(server: str, prefix: str) -> set[str]:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
        return {str(row[0]) for row in connection.execute(query, (prefix,)).fetchall()}


def _count(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM orders").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def pg_plan(tmp_path: Path, postgres_database: str) -> Iterator[dict[str, Any]]:
    """A plan over a fresh database of 2000 orders, backed up once; then one more order is
    written, so the origin and the snapshot can be told apart."""
    server, name = postgres_database.rsplit("/", 1)
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        connection.execute(
            "INSERT INTO orders (note) SELECT repeat('x', 100) FROM generate_series(1, 2000)"
        )
    stores = [
        {"name": "local", "type": "filesystem", "path": str(tmp_path / "store"), "region": "here"}
    ]
    sources = [{"name": "orders-db", "type": "postgresql", "url": postgres_database}]
    document = plan_document(tmp_path, stores, sources=sources)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(document, sort_keys=False))
    setup = {"plan": str(plan), "catalog": f"sqlite:///{tmp_path / 'catalog.db'}"}
    setup |= {"server": server, "name": name, "url": postgres_database, "tmp": tmp_path}
    assert main(["--catalog", setup["catalog"], "backup", str(plan)]) == 0
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute("INSERT INTO orders (note) VALUES ('written after the backup')")
    yield setup
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        for database in _databases(server, f"{name}_"):
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _restore(setup: dict[str, Any], *args: str) -> int:
    return main(["--catalog", setup["catalog"], "restore", "--yes", *args, setup["plan"]])


def test_force_swaps_in_a_verified_copy_and_keeps_the_replaced_database(
    pg_plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert _restore(pg_plan, "--force") == 0
    out = capsys.readouterr().out
    assert "verified" in out and "dropdb" in out
    assert _count(pg_plan["url"]) == 2000
    [previous] = _databases(pg_plan["server"], f"{pg_plan['name']}_drkit_previous_")
    assert previous in out
    assert _count(f"{pg_plan['server']}/{previous}") == 2001  # the replaced one, untouched
    assert not _databases(pg_plan["server"], f"{pg_plan['name']}_drkit_restoring_")


def test_drop_previous_removes_the_replaced_database_after_the_swap(
    pg_plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert _restore(pg_plan, "--force", "--drop-previous", "--json") == 0
    [item] = json.loads(capsys.readouterr().out)["items"]
    assert item["previous_removed"] is True and item["verified"] is True
    assert _count(pg_plan["url"]) == 2000
    assert _databases(pg_plan["server"], f"{pg_plan['name']}_") == set()


def test_a_restore_into_a_new_database_keeps_no_copy(
    pg_plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    new = f"{pg_plan['name']}_new"
    assert _restore(pg_plan, "--to", f"orders-db={new}") == 0
    assert _count(f"{pg_plan['server']}/{new}") == 2000
    assert _databases(pg_plan["server"], f"{pg_plan['name']}_") == {new}


@pytest.mark.parametrize("system", ["template1", "postgres"])
def test_system_databases_are_refused_as_targets(
    pg_plan: dict[str, Any], capsys: pytest.CaptureFixture[str], system: str
) -> None:
    capsys.readouterr()
    assert _restore(pg_plan, "--force", "--to", f"orders-db={system}") == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "system database" in err and "hint:" in err and "Traceback" not in err


def _start_restore(setup: dict[str, Any], **options: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "drkit", "--catalog", setup["catalog"], "restore"]
    return subprocess.Popen(
        [*command, "--yes", "--force", setup["plan"]],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,
    )


def _wait_for_copy(setup: dict[str, Any], process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if _databases(setup["server"], f"{setup['name']}_drkit_restoring_"):
            return
        time.sleep(0.01)
    pytest.fail("the restore never created its staging copy")


@pytest.fixture
def big_pg_plan(pg_plan: dict[str, Any]) -> dict[str, Any]:
    """The same plan, snapshot taken of a table big enough that loading it takes a while."""
    with psycopg.connect(pg_plan["url"], autocommit=True) as connection:
        connection.execute(
            "INSERT INTO orders (note) SELECT md5(g::text) FROM generate_series(1, 400000) g"
        )
    assert main(["--catalog", pg_plan["catalog"], "backup", pg_plan["plan"]]) == 0
    with psycopg.connect(pg_plan["url"], autocommit=True) as connection:
        connection.execute("INSERT INTO orders (note) VALUES ('after the second backup')")
    return pg_plan


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_restore_leaves_the_target_as_it_was_and_no_copy(
    big_pg_plan: dict[str, Any], how: signal.Signals
) -> None:
    process = _start_restore(big_pg_plan)
    _wait_for_copy(big_pg_plan, process)
    process.send_signal(how)
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, err.decode()
    assert _count(big_pg_plan["url"]) == 402002
    assert _databases(big_pg_plan["server"], f"{big_pg_plan['name']}_") == set()


@pytest.mark.slow
def test_a_killed_restore_leaves_the_target_and_cleanup_removes_its_copy(
    big_pg_plan: dict[str, Any],
) -> None:
    process = _start_restore(big_pg_plan)
    _wait_for_copy(big_pg_plan, process)
    process.kill()
    process.communicate(timeout=60)
    assert _count(big_pg_plan["url"]) == 402002
    assert main(["--catalog", big_pg_plan["catalog"], "cleanup", big_pg_plan["plan"]]) == 0
    assert _databases(big_pg_plan["server"], f"{big_pg_plan['name']}_") == set()
    assert _count(big_pg_plan["url"]) == 402002


def _limit_file_size() -> None:
    # A staging disk that fills up while the artifact is staged: files past 12 MiB fail to
    # grow (EFBIG, not a kill): room for the fetched artifact (8 MiB), not for the 17 MiB
    # plaintext pg_restore loads from.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (12 << 20, 12 << 20))


@pytest.mark.slow
def test_a_restore_failing_on_a_full_staging_disk_leaves_the_target_as_it_was(
    big_pg_plan: dict[str, Any],
) -> None:
    process = _start_restore(big_pg_plan, preexec_fn=_limit_file_size)
    out, err = process.communicate(timeout=120)
    assert process.returncode not in (0, ExitCode.INTERRUPTED), out.decode()
    assert "cannot stage orders-db" in err.decode(), err.decode()
    assert _count(big_pg_plan["url"]) == 402002
    assert _databases(big_pg_plan["server"], f"{big_pg_plan['name']}_") == set()
