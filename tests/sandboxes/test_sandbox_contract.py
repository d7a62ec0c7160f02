"""One contract for every Sandbox (an ephemeral PostgreSQL cluster, scratch databases on the
real PostgreSQL and MariaDB servers, a temporary folder for SQLite and file trees): what
``drkit.sandboxes.base.Sandbox`` promises, checked the same way for each.

- entering gives each source an empty target, the same one when asked twice, that a capture
  restores into;
- leaving removes it, on success and when the drill fails;
- a source the sandbox cannot hold is refused with a SandboxError;
- describing it never shows a secret.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drkit.errors import DrkitError, SandboxError
from drkit.plan.schema import FilesSource, MysqlSource, PostgresqlSource, SourceSpec, SqliteSource
from drkit.sandboxes.base import Sandbox
from drkit.sources import make_source
from drkit.sources.base import Target


@dataclass
class SandboxCase:
    make: Callable[[], Any]
    source: SourceSpec
    #: a source of a type this sandbox cannot hold
    foreign: SourceSpec
    #: True once the target is gone (after teardown)
    is_gone: Callable[[Target], bool]


def _database_gone(spec: SourceSpec) -> Callable[[Target], bool]:
    def probe(target: Target) -> bool:
        try:
            make_source(spec).query(target, "SELECT 1")
        except DrkitError:
            return True
        return False

    return probe


def _path_gone(target: Target) -> bool:
    return not Path(target.location).exists()


def _postgres_source(request: pytest.FixtureRequest) -> PostgresqlSource:
    import psycopg

    url: str = request.getfixturevalue("postgres_database")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE orders (id int)")
        connection.execute("INSERT INTO orders VALUES (1), (2), (3)")
    return PostgresqlSource(name="orders-db", type="postgresql", url=url)


def _mysql_source(request: pytest.FixtureRequest) -> MysqlSource:
    import pymysql

    url: str = request.getfixturevalue("mysql_database")
    database = url.rsplit("/", 1)[1]
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE orders (id INT PRIMARY KEY)")
            cursor.execute("INSERT INTO orders VALUES (1), (2), (3)")
        connection.commit()
    finally:
        connection.close()
    return MysqlSource(name="ledger-db", type="mysql", url=url)


def _sqlite_source(request: pytest.FixtureRequest) -> SqliteSource:
    tmp: Path = request.getfixturevalue("tmp_path")
    with sqlite3.connect(tmp / "app.db") as connection:
        connection.executescript(
            "CREATE TABLE orders (id INT); INSERT INTO orders VALUES (1),(2),(3);"
        )
    connection.close()
    return SqliteSource(name="app-db", type="sqlite", path=str(tmp / "app.db"))


def _files_source(request: pytest.FixtureRequest) -> FilesSource:
    tmp: Path = request.getfixturevalue("tmp_path")
    (tmp / "config").mkdir()
    (tmp / "config" / "app.yaml").write_text("listen: 8080\n")
    return FilesSource(name="app-config", type="files", paths=[str(tmp / "config")])


def _ephemeral_case(request: pytest.FixtureRequest) -> SandboxCase:
    from drkit.sandboxes.ephemeral_postgres import EphemeralPostgres

    source = _postgres_source(request)
    return SandboxCase(EphemeralPostgres, source, _files_source(request), _database_gone(source))


def _scratch_postgres_case(request: pytest.FixtureRequest) -> SandboxCase:
    from drkit.sandboxes.scratch_postgres import ScratchPostgres

    server: str = request.getfixturevalue("postgres_server")
    source = _postgres_source(request)
    return SandboxCase(
        lambda: ScratchPostgres(server), source, _files_source(request), _database_gone(source)
    )


def _scratch_mysql_case(request: pytest.FixtureRequest) -> SandboxCase:
    from drkit.sandboxes.scratch_mysql import ScratchMysql

    server: str = request.getfixturevalue("mysql_server")
    source = _mysql_source(request)
    return SandboxCase(
        lambda: ScratchMysql(server), source, _files_source(request), _database_gone(source)
    )


def _directory_case(source: Callable[[pytest.FixtureRequest], SourceSpec]) -> Callable[..., Any]:
    def build(request: pytest.FixtureRequest) -> SandboxCase:
        from drkit.sandboxes.scratch_directory import ScratchDirectory

        foreign = PostgresqlSource(name="pg", type="postgresql", url="postgresql://x@h/db")
        return SandboxCase(ScratchDirectory, source(request), foreign, _path_gone)

    return build


CASES: dict[str, Callable[[pytest.FixtureRequest], SandboxCase]] = {
    "ephemeral-postgresql": _ephemeral_case,
    "scratch-postgresql": _scratch_postgres_case,
    "scratch-mysql": _scratch_mysql_case,
    "directory-sqlite": _directory_case(_sqlite_source),
    "directory-files": _directory_case(_files_source),
}
MARKS = {
    "ephemeral-postgresql": [pytest.mark.postgres, pytest.mark.slow],
    "scratch-postgresql": [pytest.mark.postgres],
    "scratch-mysql": [pytest.mark.mysql],
}


@pytest.fixture(params=[pytest.param(kind, marks=MARKS.get(kind, [])) for kind in CASES])
def case(request: pytest.FixtureRequest) -> SandboxCase:
    return CASES[request.param](request)


def restore_capture(spec: SourceSpec, target: Target) -> None:
    source = make_source(spec)
    with source.snapshot() as capture:
        data = b"".join(capture.chunks)
    source.restore(io.BytesIO(data), target)


def test_a_sandbox_gives_an_empty_target_a_capture_restores_into_then_removes_it(
    case: SandboxCase,
) -> None:
    sandbox: Sandbox
    with case.make() as sandbox:
        target = sandbox.target_for(case.source)
        assert sandbox.target_for(case.source) == target
        source = make_source(case.source)
        assert source.is_target_empty(target)
        restore_capture(case.source, target)
        assert not source.is_target_empty(target)
    assert case.is_gone(target)


def test_a_failing_drill_still_removes_the_sandbox(case: SandboxCase) -> None:
    target: Target | None = None
    with pytest.raises(KeyboardInterrupt):
        manager: AbstractContextManager[Sandbox] = case.make()
        with manager as sandbox:
            target = sandbox.target_for(case.source)
            restore_capture(case.source, target)
            raise KeyboardInterrupt
    assert target is not None and case.is_gone(target)


def test_a_source_the_sandbox_cannot_hold_is_refused(case: SandboxCase) -> None:
    with case.make() as sandbox, pytest.raises(SandboxError):
        sandbox.target_for(case.foreign)


def test_describing_a_sandbox_shows_no_secret(case: SandboxCase) -> None:
    with case.make() as sandbox:
        target = sandbox.target_for(case.source)
        description = sandbox.describe()
    assert description
    if target.password is not None:
        assert target.password.reveal() not in description
