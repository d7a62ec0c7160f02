"""open_sandboxes(plan): the right sandbox per source type from drill.sandbox, targets and
DRKIT_SANDBOX_<SOURCE>_URL for checks (read-only users, never the plan's secrets), and
everything torn down on every exit path (also when provisioning fails half way)."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drkit.errors import SandboxError
from drkit.execute import has_program
from drkit.plan.schema import Plan
from drkit.sandboxes import open_sandboxes
from drkit.sandboxes.base import environment_name_for
from drkit.sandboxes.ephemeral_postgres import EphemeralPostgres
from tests.conftest import require


def make_plan(
    sources: list[dict[str, Any]],
    sandbox: dict[str, Any] | None = None,
    checks: list[dict[str, Any]] | None = None,
) -> Plan:
    drill: dict[str, Any] = {"sandbox": sandbox or {}}
    if checks is not None:
        drill["checks"] = checks
    return Plan.model_validate(
        {
            "version": 1,
            "name": "payments",
            "sources": sources,
            "keys": [{"name": "primary", "type": "keyfile", "path": "/etc/drkit/primary.key"}],
            "stores": [
                {"name": "local", "type": "filesystem", "path": "/mnt/dr", "region": "here"}
            ],
            "drill": drill,
        }
    )


SQLITE = {"name": "sessions", "type": "sqlite", "path": "/var/lib/app/sessions.db"}
FILES = {"name": "app-config", "type": "files", "paths": ["/etc/app"]}
POSTGRES = {"name": "orders-db", "type": "postgresql", "url": "postgresql://app@db:5432/orders"}
MYSQL = {"name": "ledger", "type": "mysql", "url": "mysql://app@db:3306/ledger"}


@pytest.fixture
def scratch_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary folders of the sandboxes land here, so a test can see that none is left."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    return folder


COMMAND_CHECK = {"type": "command", "run": ["true"]}


def is_port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_environment_names_are_upper_case_with_underscores() -> None:
    assert environment_name_for("orders-db.v2") == "DRKIT_SANDBOX_ORDERS_DB_V2_URL"


def test_sqlite_and_files_share_one_temporary_folder_removed_on_exit(scratch_tmp: Path) -> None:
    with open_sandboxes(make_plan([SQLITE, FILES])) as sandboxes:
        sqlite_target = Path(sandboxes.target_for("sessions").location)
        files_target = Path(sandboxes.target_for("app-config").location)
        assert sqlite_target.name == "sessions.db" and files_target.name == "app-config"
        assert sqlite_target.parent == files_target.parent
        assert sqlite_target.parent.parent == scratch_tmp
        assert sandboxes.environment() == {
            "DRKIT_SANDBOX_SESSIONS_URL": str(sqlite_target),
            "DRKIT_SANDBOX_APP_CONFIG_URL": str(files_target),
        }
        assert len(sandboxes.describe()) == 1
    assert list(scratch_tmp.iterdir()) == []


@pytest.mark.postgres
@pytest.mark.parametrize("failure", [None, KeyboardInterrupt()], ids=["success", "interrupt"])
def test_with_a_command_check_the_cluster_gives_checks_a_read_only_tcp_url(
    scratch_tmp: Path, failure: BaseException | None
) -> None:
    require(has_program("initdb") and has_program("pg_ctl"), "initdb/pg_ctl are not installed")
    port = 0
    try:
        with open_sandboxes(make_plan([POSTGRES, SQLITE], checks=[COMMAND_CHECK])) as sandboxes:
            environment = sandboxes.environment()
            url = environment["DRKIT_SANDBOX_ORDERS_DB_URL"]
            assert url.startswith("postgresql://drkit_reader@127.0.0.1:")
            assert url.endswith("/orders_db")
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            password = environment["DRKIT_SANDBOX_ORDERS_DB_PASSWORD"]
            with psycopg.connect(url, password=password) as connection:
                assert connection.execute("SELECT 1").fetchone() == (1,)
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    connection.execute("CREATE TABLE t (id int)")
            if failure is not None:
                raise failure
    except KeyboardInterrupt as raised:
        assert raised is failure
    assert port and not is_port_open(port)
    assert list(scratch_tmp.iterdir()) == []


@pytest.mark.postgres
def test_without_a_command_check_the_cluster_has_no_tcp_port_at_all(scratch_tmp: Path) -> None:
    require(has_program("initdb") and has_program("pg_ctl"), "initdb/pg_ctl are not installed")
    with open_sandboxes(make_plan([POSTGRES])) as sandboxes:
        [cluster] = sandboxes.sandboxes
        assert isinstance(cluster, EphemeralPostgres) and cluster.port is not None
        assert not is_port_open(cluster.port)
        reader = sandboxes.reader_targets()["orders-db"]
        assert "host=%2F" in reader.location and "drkit_reader@" in reader.location


@pytest.mark.postgres
def test_scratch_server_checks_get_a_reader_password_never_the_plans(
    postgres_server: str, monkeypatch: pytest.MonkeyPatch, scratch_tmp: Path
) -> None:
    monkeypatch.setenv("SANDBOX_PASSWORD", "s3cret")  # trust auth ignores it
    plan = make_plan(
        [POSTGRES], {"postgresql": f"{postgres_server}/", "password": "env:SANDBOX_PASSWORD"}
    )
    with open_sandboxes(plan) as sandboxes:
        environment = sandboxes.environment()
        target = sandboxes.target_for("orders-db")
        assert "s3cret" not in environment.values()
        assert environment["DRKIT_SANDBOX_ORDERS_DB_PASSWORD"]
        assert "drkit_reader_" in environment["DRKIT_SANDBOX_ORDERS_DB_URL"]
        assert "drkit_drill_" in target.location
        database = target.location.rsplit("/", 1)[1]
    with psycopg.connect(f"{postgres_server}/postgres") as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        assert found.fetchone() is None
        readers = connection.execute("SELECT 1 FROM pg_roles WHERE rolname LIKE 'drkit_reader_%'")
        assert readers.fetchone() is None


def test_mysql_source_without_a_sandbox_server_is_refused_before_provisioning(
    scratch_tmp: Path,
) -> None:
    with (
        pytest.raises(SandboxError, match=r"drill\.sandbox\.mysql"),
        open_sandboxes(make_plan([FILES, MYSQL])),
    ):
        pass
    assert list(scratch_tmp.iterdir()) == []


def test_failure_provisioning_a_later_sandbox_tears_down_the_earlier_ones(
    scratch_tmp: Path,
) -> None:
    plan = make_plan([FILES, POSTGRES], {"postgresql": "postgresql://postgres@127.0.0.1:1/"})
    with pytest.raises(SandboxError, match="cannot connect"), open_sandboxes(plan):
        pass
    assert list(scratch_tmp.iterdir()) == []


def test_only_the_named_sources_get_sandboxes(scratch_tmp: Path) -> None:
    with open_sandboxes(make_plan([FILES, MYSQL]), ["app-config"]) as sandboxes:
        assert set(sandboxes.targets) == {"app-config"}
    assert list(scratch_tmp.iterdir()) == []
