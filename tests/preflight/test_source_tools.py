"""`drkit check` names every program a source needs, point-in-time capture included: a
`pitr:` source without pg_basebackup, pg_receivewal or mariadb-binlog fails here, not in
the night's backup or the archiver's first round."""

from __future__ import annotations

from pathlib import Path

import pytest

from drkit.plan.schema import BinlogPitr, MysqlSource, Pitr, PostgresqlSource
from drkit.preflight.finding import Finding
from drkit.preflight.sources import check_source


def tools(findings: list[Finding]) -> dict[str, tuple[bool, str]]:
    return {f.subject: (f.failed, f.owner) for f in findings if f.area == "tool"}


def test_a_postgresql_pitr_source_needs_pg_basebackup_and_pg_receivewal() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/orders"
    plain = PostgresqlSource(name="orders", type="postgresql", url=url)
    continuous = PostgresqlSource(name="orders", type="postgresql", url=url, pitr=Pitr())
    assert "pg_basebackup for orders" not in tools(check_source(plain, connect=False))
    found = tools(check_source(continuous, connect=False))
    assert found["pg_basebackup for orders"] == (False, "capture:orders")
    assert found["pg_receivewal for orders"] == (False, "archive:orders")


def test_a_mariadb_pitr_source_without_mariadb_binlog_fails_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "mysql://root@127.0.0.1:3306/ledger"
    source = MysqlSource(name="ledger", type="mysql", url=url, pitr=BinlogPitr())
    assert tools(check_source(source, connect=False))["mariadb-binlog for ledger"][0] is False
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: nothing is installed
    found = tools(check_source(source, connect=False))
    assert found["mariadb-binlog for ledger"] == (True, "archive:ledger")  # blocks nothing
