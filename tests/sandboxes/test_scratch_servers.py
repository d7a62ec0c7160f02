"""Scratch databases on real PostgreSQL and MariaDB servers: created empty per source, dropped
on success, on an exception and on KeyboardInterrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest

from drkit.errors import SandboxError
from drkit.leases import registry
from drkit.plan.schema import MysqlSource, PostgresqlSource
from drkit.sandboxes.scratch_mysql import ScratchMysql
from drkit.sandboxes.scratch_mysql import remove_leftover_databases as remove_mysql_leftovers
from drkit.sandboxes.scratch_postgres import ScratchPostgres
from drkit.sandboxes.scratch_postgres import (
    remove_leftover_databases as remove_postgres_leftovers,
)

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


# --- readers and leftovers -----------------------------------------------------------------------


@pytest.fixture
def drkit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def mysql_connect(server: str, user: str = "root", password: str = "", **options: Any) -> Any:
    parts = urlsplit(server)
    return pymysql.connect(
        host=parts.hostname, port=parts.port, user=user, password=password, **options
    )


def mysql_users(server: str) -> set[str]:
    connection = mysql_connect(server)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT User FROM mysql.user WHERE User LIKE 'drkit\\_reader\\_%'")
            return {str(row[0]) for row in cursor.fetchall()}
    finally:
        connection.close()


@pytest.mark.mysql
def test_a_mysql_reader_reads_its_database_and_can_change_nothing_anywhere(
    mysql_server: str, mysql_database: str, drkit_home: Path
) -> None:
    bystander = mysql_database.rsplit("/", 1)[1]
    source = MysqlSource(name="ledger", type="mysql", url="mysql://a@b/ledger")
    with ScratchMysql(f"{mysql_server}/") as sandbox:
        name = sandbox.target_for(source).location.rsplit("/", 1)[1]
        admin = mysql_connect(mysql_server, database=name, autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute("CREATE TABLE entries (id INT)")
            cursor.execute("INSERT INTO entries VALUES (7)")
        admin.close()
        reader = sandbox.reader_target_for(source)
        assert reader.password is not None
        user = urlsplit(reader.location).username
        assert user is not None and user.startswith("drkit_reader_")
        connection = mysql_connect(
            mysql_server, user, reader.password.reveal(), database=name, autocommit=True
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM entries")
            assert cursor.fetchall() == ((7,),)
            for statement in (
                "DROP TABLE entries",
                "INSERT INTO entries VALUES (8)",
                "CREATE TABLE more (id INT)",
                f"CREATE TABLE `{bystander}`.planted (id INT)",
                f"DROP DATABASE `{bystander}`",
                "CREATE DATABASE drkit_planted",
            ):
                with pytest.raises(pymysql.MySQLError):
                    cursor.execute(statement)
            cursor.execute("SHOW DATABASES")
            assert {row[0] for row in cursor.fetchall()} == {"information_schema", name}
        connection.close()
        assert user in mysql_users(mysql_server)
    assert bystander in mysql_databases(mysql_server)
    assert "drkit_planted" not in mysql_databases(mysql_server)
    assert user not in mysql_users(mysql_server)


@pytest.mark.mysql
def test_leftovers_of_a_killed_mysql_drill_are_dropped_from_its_lease(
    mysql_server: str, drkit_home: Path
) -> None:
    source = MysqlSource(name="ledger", type="mysql", url="mysql://a@b/ledger")
    sandbox = ScratchMysql(f"{mysql_server}/").__enter__()  # never exited, as when killed
    name = sandbox.target_for(source).location.rsplit("/", 1)[1]
    assert name in mysql_databases(mysql_server) and mysql_users(mysql_server)
    [(_, lease)] = registry.list_leases()
    assert lease.data["databases"] == [name]
    remove_mysql_leftovers(lease, None)
    assert name not in mysql_databases(mysql_server)
    assert set(lease.data["readers"].values()).isdisjoint(mysql_users(mysql_server))


@pytest.mark.postgres
def test_a_postgres_reader_is_read_only_and_dropped_with_its_database(
    postgres_server: str, drkit_home: Path
) -> None:
    source = PostgresqlSource(name="orders", type="postgresql", url="postgresql://a@b/orders")
    with ScratchPostgres(f"{postgres_server}/") as sandbox:
        target = sandbox.target_for(source)
        with psycopg.connect(target.location, autocommit=True) as connection:
            connection.execute("CREATE TABLE orders AS SELECT 5 AS total")
        reader = sandbox.reader_target_for(source)
        role = urlsplit(reader.location).username
        assert reader.password is not None and role is not None
        with psycopg.connect(reader.location, password=reader.password.reveal()) as connection:
            assert connection.execute("SELECT total FROM orders").fetchone() == (5,)
            with pytest.raises(psycopg.Error):
                connection.execute("DROP TABLE orders")
    with psycopg.connect(f"{postgres_server}/postgres") as connection:
        found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        assert found.fetchone() is None


@pytest.mark.postgres
def test_leftovers_of_a_killed_postgres_drill_are_dropped_from_its_lease(
    postgres_server: str, drkit_home: Path
) -> None:
    source = PostgresqlSource(name="orders", type="postgresql", url="postgresql://a@b/orders")
    sandbox = ScratchPostgres(f"{postgres_server}/").__enter__()  # never exited
    name = sandbox.target_for(source).location.rsplit("/", 1)[1]
    sandbox.reader_target_for(source)
    [(_, lease)] = registry.list_leases()
    remove_postgres_leftovers(lease, None)
    assert name not in postgres_databases(postgres_server)
    with psycopg.connect(f"{postgres_server}/postgres") as connection:
        roles = list(lease.data["readers"].values())
        found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = ANY(%s)", (roles,))
        assert found.fetchone() is None
