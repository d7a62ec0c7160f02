"""Scratch databases on real PostgreSQL and MariaDB servers: created empty per source, dropped
on success, on an exception and on KeyboardInterrupt."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest

from drkit.errors import SandboxError
from drkit.plan.schema import MysqlSource, PostgresqlSource
from drkit.sandboxes.scratch_mysql import ScratchMysql
from drkit.sandboxes.scratch_postgres import ScratchPostgres

FAILURES = pytest.mark.parametrize(
    "failure",
    [None, RuntimeError("drill failed"), KeyboardInterrupt()],
    ids=["success", "exception", "keyboard-interrupt"],
)


def postgres_databases(server: str) -> set[str]:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        rows = connection.execute("SELECT datname FROM pg_database").fetchall()
    return {str(row[0]) for row in rows}


def mysql_databases(server: str) -> set[str]:
    parts = urlsplit(server)
    connection = pymysql.connect(host=parts.hostname, port=parts.port, user="root", password="")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            return {str(row[0]) for row in cursor.fetchall()}
    finally:
        connection.close()


def run_drill(
    sandbox: ScratchPostgres | ScratchMysql,
    source: PostgresqlSource | MysqlSource,
    failure: BaseException | None,
) -> str:
    """Use the sandbox like a drill would; the scratch database's name."""
    names: list[str] = []
    try:
        with sandbox:
            target = sandbox.target_for(source)
            names.append(target.location.rsplit("/", 1)[1])
            assert sandbox.target_for(source) == target
            if failure is not None:
                raise failure
    except (RuntimeError, KeyboardInterrupt) as raised:
        assert raised is failure
    return names[0]


@pytest.mark.postgres
@FAILURES
def test_scratch_postgres_database_exists_during_the_drill_and_is_dropped_after(
    postgres_server: str, failure: BaseException | None
) -> None:
    source = PostgresqlSource(name="orders", type="postgresql", url="postgresql://a@b/orders")
    sandbox = ScratchPostgres(f"{postgres_server}/")
    with sandbox:
        target = sandbox.target_for(source)
        name = target.location.rsplit("/", 1)[1]
        assert name.startswith("drkit_drill_") and name in postgres_databases(postgres_server)
        with psycopg.connect(target.location) as connection:  # empty and usable
            assert connection.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone() == (0,)
    assert name not in postgres_databases(postgres_server)
    dropped = run_drill(ScratchPostgres(f"{postgres_server}/"), source, failure)
    assert dropped not in postgres_databases(postgres_server)


@pytest.mark.postgres
def test_scratch_postgres_drops_a_database_someone_is_still_connected_to(
    postgres_server: str,
) -> None:
    source = PostgresqlSource(name="orders", type="postgresql", url="postgresql://a@b/orders")
    with ScratchPostgres(postgres_server) as sandbox:
        target = sandbox.target_for(source)
        lingering = psycopg.connect(target.location)
    try:
        assert target.location.rsplit("/", 1)[1] not in postgres_databases(postgres_server)
    finally:
        lingering.close()


@pytest.mark.postgres
def test_unreachable_scratch_postgres_server_fails_on_entry() -> None:
    with (
        pytest.raises(SandboxError, match="cannot connect"),
        ScratchPostgres("postgresql://postgres@127.0.0.1:1/"),
    ):
        pass


@pytest.mark.mysql
@FAILURES
def test_scratch_mysql_database_exists_during_the_drill_and_is_dropped_after(
    mysql_server: str, failure: BaseException | None
) -> None:
    source = MysqlSource(name="ledger", type="mysql", url="mysql://a@b/ledger")
    with ScratchMysql(f"{mysql_server}/") as sandbox:
        target = sandbox.target_for(source)
        name = target.location.rsplit("/", 1)[1]
        assert target.location == f"{mysql_server}/{name}"
        assert name.startswith("drkit_drill_") and name in mysql_databases(mysql_server)
    assert name not in mysql_databases(mysql_server)
    dropped = run_drill(ScratchMysql(f"{mysql_server}/"), source, failure)
    assert dropped not in mysql_databases(mysql_server)


@pytest.mark.mysql
def test_scratch_mysql_refuses_a_postgresql_source(mysql_server: str) -> None:
    source = PostgresqlSource(name="orders", type="postgresql", url="postgresql://a@b/orders")
    with ScratchMysql(mysql_server) as sandbox, pytest.raises(SandboxError, match="cannot hold"):
        sandbox.target_for(source)
