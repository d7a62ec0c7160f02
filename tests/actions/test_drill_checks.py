"""Drill checks run with the least privilege: a command check sees the sandboxes and what the
plan names for it, not drkit's environment (where the plan's secrets are); it and all it
started end by its timeout; a MariaDB SQL check that tries DROP or CREATE fails and changes
nothing, neither in its sandbox nor in any other database on the server."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import Resources
from drkit.leases.processes import is_process_alive
from drkit.outcome import Outcome

from ..conftest import MYSQL_HOST, MYSQL_PORT


def command_check(*run: str, **extra: Any) -> dict[str, Any]:
    return {"type": "command", "run": list(run), **extra}


def test_a_command_check_sees_the_sandboxes_and_what_the_plan_names_nothing_else(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRKIT_TEST_PLAN_SECRET", "plan-secret-4b1")
    monkeypatch.setenv("SMOKE_TOKEN", "named-for-the-check-77c")
    seen = tmp_path / "environment"
    check = command_check(
        "sh", "-c", f"env > {seen}", env={"API_URL": "http://x", "TOKEN": "env:SMOKE_TOKEN"}
    )
    resources = make_resources(two_regions, drill={"checks": [check]})
    backup(resources)
    [result] = drill(resources)
    assert result.outcome == Outcome.OK, result.to_json()
    environment = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert environment["API_URL"] == "http://x"
    assert environment["TOKEN"] == "named-for-the-check-77c"
    assert Path(environment["DRKIT_SANDBOX_APP_DB_URL"]).name == "app-db.db"
    assert "DRKIT_TEST_PLAN_SECRET" not in environment and "SMOKE_TOKEN" not in environment
    assert "plan-secret-4b1" not in seen.read_text()


def test_a_command_check_that_overruns_fails_and_leaves_no_process(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    backend: dict[str, Path],
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "daemon.pid"
    check = command_check(
        "sh", "-c", f"setsid sleep 300 & echo $! > {pid_file}; sleep 300", timeout="1s"
    )
    resources = make_resources(two_regions, drill={"checks": [check]})
    backup(resources)
    [result] = drill(resources)
    # the fingerprints come whatever the plan lists; they pass
    *fingerprints, outcome = result.checks
    assert [check.passed for check in fingerprints] == [True, True]
    assert not outcome.passed and outcome.detail == "did not finish within 1s"
    assert result.outcome == Outcome.FAILED
    assert not is_process_alive(int(pid_file.read_text()))


def mysql(database: str | None = None) -> Any:
    return pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user="root",
        password="",
        database=database,
        autocommit=True,
    )


def run_sql(database: str | None, *statements: str) -> list[tuple[Any, ...]]:
    connection = mysql(database)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        connection.close()


@pytest.fixture
def bystander(mysql_server: str) -> Iterator[str]:
    """Another database on the same server, holding a table nobody may touch."""
    name = f"drkit_bystander_{secrets.token_hex(4)}"
    run_sql(None, f"CREATE DATABASE `{name}`", f"CREATE TABLE `{name}`.keep (id INT)")
    run_sql(name, "INSERT INTO keep VALUES (1), (2)")
    yield name
    run_sql(None, f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.mysql
def test_a_mariadb_check_that_drops_or_creates_fails_and_changes_nothing_anywhere(
    make_resources: Callable[..., Resources],
    two_regions: list[dict[str, Any]],
    mysql_server: str,
    mysql_database: str,
    bystander: str,
) -> None:
    source_database = mysql_database.rsplit("/", 1)[1]
    # Leftovers are judged against what the server held before: it is shared with other runs.
    before = {row[0] for row in run_sql(None, "SHOW DATABASES")}
    run_sql(source_database, "CREATE TABLE ledger (id INT)", "INSERT INTO ledger VALUES (1), (2)")
    attempts = [
        f"DROP DATABASE `{bystander}`",
        f"CREATE TABLE `{bystander}`.planted (id INT)",
        f"DROP TABLE `{bystander}`.keep",
        "DROP TABLE ledger",
        "CREATE TABLE planted (id INT)",
        "CREATE DATABASE drkit_planted",
        f"SELECT count(*) FROM `{bystander}`.keep",
    ]
    checks = [
        {"type": "sql", "source": "ledger", "query": query, "expect": ">= 0"} for query in attempts
    ]
    checks.append(
        {"type": "sql", "source": "ledger", "query": "SELECT count(*) FROM ledger", "expect": "= 2"}
    )
    resources = make_resources(
        two_regions,
        sources=[{"name": "ledger", "type": "mysql", "url": mysql_database}],
        drill={"sandbox": {"mysql": f"{mysql_server}/"}, "checks": checks},
    )
    backup(resources)
    [result] = drill(resources)
    *refused, intact = [check for check in result.checks if check.name.startswith("sql ")]
    assert [check.passed for check in refused] == [False] * len(attempts), result.to_json()
    assert all("denied" in check.detail.lower() for check in refused), result.to_json()
    assert intact.passed and intact.measured == 2  # the DROP TABLE before it changed nothing
    assert run_sql(bystander, "SELECT count(*) FROM keep") == [(2,)]
    assert run_sql(None, f"SHOW TABLES FROM `{bystander}`") == [("keep",)]
    databases = {row[0] for row in run_sql(None, "SHOW DATABASES")}
    assert "drkit_planted" not in databases
    assert not {name for name in databases - before if name.startswith("drkit_drill_")}
    readers = run_sql(None, "SELECT User FROM mysql.user WHERE User LIKE 'drkit\\_reader\\_%'")
    assert readers == []
