"""The ephemeral PostgreSQL sandbox really starts a cluster that only drkit can reach (its own
0700 folder, a socket there, a password on every connection, TCP only when asked), hands out
empty databases and read-only targets, and leaves no process, port, folder or lease behind on
any exit path; a cluster whose drill was killed is removed by its lease's cleaner."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from drkit.errors import SandboxError
from drkit.execute import has_program
from drkit.leases import registry
from drkit.plan.schema import PostgresqlSource, SqliteSource
from drkit.sandboxes.cluster import remove_leftover_cluster
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
def _server_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(has_program("initdb") and has_program("pg_ctl"), "initdb/pg_ctl are not installed")
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))


def postmaster_of(sandbox: EphemeralPostgres) -> int:
    pid = sandbox.postmaster_pid()
    assert pid is not None and is_process_alive(pid)
    return pid


def assert_gone(directory: Path, port: int, pids: list[int]) -> None:
    assert not any(is_process_alive(pid) for pid in pids)
    assert not is_port_open(port)
    assert not directory.exists()
    assert not list(registry.list_leases())


def server_settings(connection: psycopg.Connection) -> dict[str, str]:
    rows = connection.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('fsync', 'listen_addresses', 'unix_socket_directories', 'password_encryption')"
    ).fetchall()
    return {str(name): str(setting) for name, setting in rows}


def test_cluster_listens_only_on_a_private_socket_and_is_gone_afterwards() -> None:
    with EphemeralPostgres() as sandbox:
        target = sandbox.target_for(orders_source())
        assert sandbox.directory is not None and sandbox.port is not None
        assert target.location == sandbox.url_for("orders_db")
        assert sandbox.target_for(orders_source()) == target  # stable per source
        assert target.password is not None
        with psycopg.connect(target.location, password=target.password.reveal()) as connection:
            connection.execute("CREATE TABLE orders (id int)")
            assert server_settings(connection) == {
                "fsync": "off",
                "listen_addresses": "",
                "unix_socket_directories": str(sandbox.directory),
                "password_encryption": "scram-sha-256",
            }
        assert stat.S_IMODE(sandbox.directory.stat().st_mode) == 0o700
        assert not is_port_open(sandbox.port)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(target.location, password="").close()
        [(_, lease)] = registry.list_leases()
        assert lease.kind == "ephemeral-postgresql"
        assert lease.data["path"] == str(sandbox.directory)
        directory, port = sandbox.directory, sandbox.port
        pids = [postmaster_of(sandbox)]
        assert "socket only" in sandbox.describe()
    assert_gone(directory, port, pids)


def test_with_tcp_it_listens_on_localhost_and_still_demands_the_password() -> None:
    with EphemeralPostgres(tcp=True) as sandbox:
        sandbox.target_for(orders_source())
        reader = sandbox.reader_target_for(orders_source())
        assert reader.location == f"postgresql://drkit_reader@127.0.0.1:{sandbox.port}/orders_db"
        superuser = f"postgresql://postgres@127.0.0.1:{sandbox.port}/orders_db"
        for url in (superuser, reader.location):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(url, password="wrong", connect_timeout=5).close()
        assert reader.password is not None
        with psycopg.connect(reader.location, password=reader.password.reveal()) as connection:
            assert connection.execute("SELECT current_user").fetchone() == ("drkit_reader",)


def test_the_reader_reads_what_was_restored_and_can_change_nothing() -> None:
    with EphemeralPostgres() as sandbox:
        target = sandbox.target_for(orders_source())
        assert target.password is not None
        with psycopg.connect(target.location, password=target.password.reveal()) as connection:
            connection.execute("CREATE SCHEMA billing")
            connection.execute("CREATE TABLE billing.orders AS SELECT 42 AS total")
        reader = sandbox.reader_target_for(orders_source())
        assert reader.password is not None and reader.password != target.password
        with psycopg.connect(
            reader.location, password=reader.password.reveal(), autocommit=True
        ) as connection:
            assert connection.execute("SELECT total FROM billing.orders").fetchone() == (42,)
            for statement in (
                "DROP TABLE billing.orders",
                "INSERT INTO billing.orders VALUES (1)",
                "CREATE TABLE billing.more (id int)",
                "CREATE TEMP TABLE scratch (id int)",
                "COPY (SELECT 1) TO PROGRAM 'true'",
                "SET default_transaction_read_only = off; CREATE TABLE public.x (id int)",
            ):
                with pytest.raises(psycopg.Error):
                    connection.execute(statement)
        with pytest.raises(psycopg.OperationalError):  # nor any other database
            psycopg.connect(
                sandbox.url_for("postgres", user="drkit_reader"),
                password=reader.password.reveal(),
            ).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has to hand the cluster to postgres")
def test_as_root_the_server_runs_as_the_postgres_user_in_a_folder_of_its_own() -> None:
    with EphemeralPostgres() as sandbox:
        pid = sandbox.postmaster_pid()
        assert pid is not None and sandbox.directory is not None
        real_uid = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
        assert int(real_uid) == pwd.getpwnam("postgres").pw_uid
        assert sandbox.directory.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        assert not (sandbox.directory / "superuser-password").exists()


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


def test_the_leases_cleaner_removes_a_running_cluster_that_lost_its_drill() -> None:
    sandbox = EphemeralPostgres().__enter__()  # never exited, as when drkit is killed
    sandbox.target_for(orders_source())
    assert sandbox.directory is not None and sandbox.port is not None
    directory, port, pids = sandbox.directory, sandbox.port, [postmaster_of(sandbox)]
    [(path, lease)] = registry.list_leases()
    remove_leftover_cluster(lease, None)
    registry.release(lease)
    assert_gone(directory, port, pids)
    assert not path.exists()


def test_the_leases_cleaner_ends_an_initdb_still_writing_into_the_folder(tmp_path: Path) -> None:
    """A drill killed during initdb leaves initdb running, writing files into the folder, with
    no postmaster.pid to find it by: the cleaner ends it before removing the folder."""
    directory = tmp_path / "drkit-sandbox-pg-leftover"
    data = directory / "data"
    data.mkdir(parents=True)
    writer = (
        "import sys, time, pathlib\n"
        "folder = pathlib.Path(sys.argv[2])\n"
        "for n in range(100000):\n"
        "    (folder / f'file-{n}').write_text('x'); time.sleep(0.001)\n"
    )
    # the same shape as initdb's command line: -D naming the data folder
    stand_in = subprocess.Popen([sys.executable, "-c", writer, "-D", str(data)])
    try:
        while not any(data.iterdir()):
            time.sleep(0.01)
        lease = registry.take("ephemeral-postgresql", "leftover", data={"path": str(directory)})
        remove_leftover_cluster(lease, None)
        registry.release(lease)
        assert stand_in.wait(timeout=10) == -signal.SIGKILL
        assert not directory.exists()
    finally:
        stand_in.kill()
        stand_in.wait()


@pytest.mark.parametrize("initdb_gone", [False, True], ids=["initdb-running", "initdb-gone"])
def test_the_leases_cleaner_ends_a_backend_initdb_started_that_names_the_folder_in_pgdata(
    tmp_path: Path, initdb_gone: bool
) -> None:
    """initdb runs its ``postgres --boot`` and ``--single`` steps with the data folder in
    ``PGDATA`` only, not in their command line. The cleaner ends them with initdb, and by
    their environment when initdb itself is gone (they live on, orphaned, still writing)."""
    directory = tmp_path / "drkit-sandbox-pg-leftover"
    data = directory / "data"
    data.mkdir(parents=True)
    backend = (
        "import os, pathlib, time\n"
        "folder = pathlib.Path(os.environ['PGDATA'])\n"
        "for n in range(100000):\n"
        "    (folder / f'file-{n}').write_text('x'); time.sleep(0.001)\n"
    )
    recorded = tmp_path / "backend.pid"
    initdb = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {backend!r}],\n"
        "                         env=dict(os.environ, PGDATA=sys.argv[2]))\n"
        f"open({str(recorded)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    # initdb's shape: -D naming the data folder; its backend names it in PGDATA alone
    stand_in = subprocess.Popen([sys.executable, "-c", initdb, "-D", str(data)])
    try:
        while not recorded.exists() or not recorded.read_text() or not any(data.iterdir()):
            time.sleep(0.01)
        backend_pid = int(recorded.read_text())
        assert str(data).encode() not in Path(f"/proc/{backend_pid}/cmdline").read_bytes()
        if initdb_gone:
            stand_in.kill()
            stand_in.wait()
        lease = registry.take("ephemeral-postgresql", "leftover", data={"path": str(directory)})
        remove_leftover_cluster(lease, None)
        registry.release(lease)
        assert stand_in.wait(timeout=10) == -signal.SIGKILL
        assert not is_process_alive(backend_pid)
        assert not directory.exists()
    finally:
        stand_in.kill()
        stand_in.wait()
        with contextlib.suppress(ProcessLookupError, ValueError, OSError):
            os.kill(int(recorded.read_text()), signal.SIGKILL)


def test_a_non_postgresql_source_is_refused() -> None:
    with EphemeralPostgres() as sandbox, pytest.raises(SandboxError, match="cannot hold sqlite"):
        sandbox.target_for(SqliteSource(name="cache", type="sqlite", path="/tmp/x.db"))


def test_server_commands_are_built_as_argv_tuples() -> None:
    run_as = ("/usr/sbin/runuser", "-u", "postgres", "--")
    data = Path("/tmp/sandbox/data")
    password_file = Path("/tmp/sandbox/superuser-password")
    assert make_initdb_command(run_as, "initdb", data, password_file).argv == (
        *run_as,
        "initdb",
        "-D",
        "/tmp/sandbox/data",
        "-U",
        "postgres",
        "--auth=scram-sha-256",
        "--pwfile=/tmp/sandbox/superuser-password",
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
