"""The ephemeral PostgreSQL sandbox really starts a cluster, hands out empty databases, and
leaves no process, port or folder behind on any exit path."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

import psycopg
import pytest

from drkit.errors import SandboxError
from drkit.execute import has_program
from drkit.plan.schema import PostgresqlSource, SqliteSource
from drkit.sandboxes.ephemeral_postgres import (
    EphemeralPostgres,
    is_process_alive,
    make_initdb_command,
    make_start_command,
    make_stop_command,
)
from tests.conftest import require

pytestmark = pytest.mark.postgres


def orders_source(name: str = "orders-db") -> PostgresqlSource:
    return PostgresqlSource(name=name, type="postgresql", url="postgresql://app@db:5432/orders")


def is_port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _server_binaries() -> None:
    require(has_program("initdb") and has_program("pg_ctl"), "initdb/pg_ctl are not installed")


def postmaster_of(sandbox: EphemeralPostgres) -> int:
    pid = sandbox.postmaster_pid()
    assert pid is not None and is_process_alive(pid)
    return pid


def assert_gone(directory: Path, port: int, pids: list[int]) -> None:
    assert not any(is_process_alive(pid) for pid in pids)
    assert not is_port_open(port)
    assert not directory.exists()


def test_cluster_serves_an_empty_database_per_source_and_is_gone_afterwards() -> None:
    with EphemeralPostgres() as sandbox:
        target = sandbox.target_for(orders_source())
        assert target.location == f"postgresql://postgres@127.0.0.1:{sandbox.port}/orders_db"
        assert sandbox.target_for(orders_source()) == target  # stable per source
        with psycopg.connect(target.location, autocommit=True) as connection:
            connection.execute("CREATE TABLE orders (id int)")
            settings = dict(
                connection.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('fsync', 'listen_addresses', 'unix_socket_directories')"
                ).fetchall()
            )
            owner = connection.execute(
                "SELECT usename FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
            ).fetchone()
        assert settings == {
            "fsync": "off",
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(sandbox.directory),
        }
        assert owner is not None
        assert sandbox.directory is not None and (sandbox.directory / "data").is_dir()
        directory, port = sandbox.directory, sandbox.port
        pids = [postmaster_of(sandbox)]
        assert "127.0.0.1" in sandbox.describe()
    assert port is not None
    assert_gone(directory, port, pids)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to hand the cluster to postgres")
def test_as_root_the_server_runs_as_the_postgres_user() -> None:
    with EphemeralPostgres() as sandbox:
        pid = sandbox.postmaster_pid()
        assert pid is not None
        real_uid = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
        assert int(real_uid) == pwd.getpwnam("postgres").pw_uid


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("drill failed"), KeyboardInterrupt()],
    ids=["exception", "keyboard-interrupt"],
)
def test_cluster_is_torn_down_when_the_drill_fails(failure: BaseException) -> None:
    seen: dict[str, object] = {}
    with pytest.raises(type(failure)), EphemeralPostgres() as sandbox:
        sandbox.target_for(orders_source())
        seen.update(directory=sandbox.directory, port=sandbox.port, pids=[postmaster_of(sandbox)])
        raise failure
    directory, port, pids = seen["directory"], seen["port"], seen["pids"]
    assert isinstance(directory, Path) and isinstance(port, int) and isinstance(pids, list)
    assert_gone(directory, port, pids)


def test_a_non_postgresql_source_is_refused() -> None:
    with EphemeralPostgres() as sandbox, pytest.raises(SandboxError, match="cannot hold sqlite"):
        sandbox.target_for(SqliteSource(name="cache", type="sqlite", path="/tmp/x.db"))


def test_server_commands_are_built_as_argv_tuples() -> None:
    run_as = ("/usr/sbin/runuser", "-u", "postgres", "--")
    data = Path("/tmp/sandbox/data")
    assert make_initdb_command(run_as, "initdb", data).argv == (
        *run_as,
        "initdb",
        "-D",
        "/tmp/sandbox/data",
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
    )
    assert make_start_command((), "pg_ctl", data, 5999).argv == (
        "pg_ctl",
        "-D",
        "/tmp/sandbox/data",
        "-l",
        "/tmp/sandbox/server.log",
        "-w",
        "-t",
        "60",
        "-o",
        "-p 5999",
        "start",
    )
    assert make_stop_command((), "pg_ctl", data).argv == (
        "pg_ctl",
        "-D",
        "/tmp/sandbox/data",
        "-m",
        "immediate",
        "-w",
        "stop",
    )
