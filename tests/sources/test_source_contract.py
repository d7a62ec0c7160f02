"""One contract for every Source (SQLite, a file tree, PostgreSQL and MariaDB on the real
servers): what ``drkit.sources.base.Source`` promises, checked the same way for each.

- a capture streams bytes and, once read to the end, a fingerprint of what it captured;
- restoring the capture into an empty target gives a target whose fingerprint equals it;
- an empty target says so; a loaded one does not, describes itself, and is not replaced
  without ``replace``;
- databases answer a read-only query; a file tree refuses one with a clear error;
- its Replacement (restores that cannot destroy) loads beside a target under a marked name,
  swaps the loaded copy in keeping the old target as the previous copy, removes only marked
  copies, and refuses the server's own databases.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from drkit.errors import DrkitError, SourceError
from drkit.plan.schema import FilesSource, MysqlSource, PostgresqlSource, SourceSpec, SqliteSource
from drkit.sources import make_source
from drkit.sources.base import (
    PREVIOUS_MARK,
    RESTORING_MARK,
    FaithfulRestore,
    Fingerprint,
    Replacement,
    Source,
    Target,
    compare_fingerprints,
)
from drkit.sources.swap import make_replacement


@dataclass
class SourceCase:
    source: Source
    #: an empty place to restore to, and a second one
    empty_target: Target
    other_target: Target
    #: a query every database source answers with 3 (None for sources without SQL)
    query: str | None
    #: one of the server's own databases (None where there is none)
    system_target: Target | None = None
    spec: SourceSpec | None = None


def _sqlite_case(request: pytest.FixtureRequest) -> SourceCase:
    tmp: Path = request.getfixturevalue("tmp_path")
    with sqlite3.connect(tmp / "app.db") as connection:
        connection.executescript(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT);"
            "INSERT INTO orders (note) VALUES ('a'), ('b'), ('c');"
        )
    connection.close()
    spec = SqliteSource(name="app-db", type="sqlite", path=str(tmp / "app.db"))
    return SourceCase(
        make_source(spec),
        Target(str(tmp / "restored.db")),
        Target(str(tmp / "other.db")),
        "SELECT count(*) FROM orders",
        spec=spec,
    )


def _files_case(request: pytest.FixtureRequest) -> SourceCase:
    tmp: Path = request.getfixturevalue("tmp_path")
    config = tmp / "config"
    (config / "conf.d").mkdir(parents=True)
    (config / "app.yaml").write_text("listen: 8080\n")
    (config / "conf.d" / "features.yaml").write_text("refunds: true\n")
    (config / "current.yaml").symlink_to("app.yaml")
    spec = FilesSource(name="app-config", type="files", paths=[str(config)])
    return SourceCase(
        make_source(spec),
        Target(str(tmp / "restored")),
        Target(str(tmp / "other")),
        None,
        spec=spec,
    )


def _postgresql_case(request: pytest.FixtureRequest) -> SourceCase:
    import psycopg

    url: str = request.getfixturevalue("postgres_database")
    server = url.rsplit("/", 1)[0]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE orders (id serial PRIMARY KEY, note text)")
        connection.execute("INSERT INTO orders (note) VALUES ('a'), ('b'), ('c')")
    database = url.rsplit("/", 1)[1]
    spec = PostgresqlSource(name="orders-db", type="postgresql", url=url)
    request.addfinalizer(lambda: _drop_postgres(server, database))
    return SourceCase(
        make_source(spec),
        Target(f"{server}/{database}_restored"),
        Target(f"{server}/{database}_other"),
        "SELECT count(*) FROM orders",
        Target(f"{server}/template1"),
        spec=spec,
    )


def _drop_postgres(server: str, database: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
        for (name,) in connection.execute(query, (f"{database}_",)).fetchall():
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _mysql_case(request: pytest.FixtureRequest) -> SourceCase:
    import pymysql

    url: str = request.getfixturevalue("mysql_database")
    server, database = url.rsplit("/", 1)
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT)")
            cursor.execute("INSERT INTO orders (note) VALUES ('a'), ('b'), ('c')")
        connection.commit()
    finally:
        connection.close()
    spec = MysqlSource(name="ledger-db", type="mysql", url=url)
    request.addfinalizer(lambda: _drop_mysql(database))
    return SourceCase(
        make_source(spec),
        Target(f"{server}/{database}_restored"),
        Target(f"{server}/{database}_other"),
        "SELECT count(*) FROM orders",
        Target(f"{server}/performance_schema"),
        spec=spec,
    )


def _drop_mysql(database: str) -> None:
    import pymysql

    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root")
    try:
        with connection.cursor() as cursor:
            query = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s"
            cursor.execute(query, (f"{database}\\_%",))
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()


CASES: dict[str, Callable[[pytest.FixtureRequest], SourceCase]] = {
    "sqlite": _sqlite_case,
    "files": _files_case,
    "postgresql": _postgresql_case,
    "mysql": _mysql_case,
}
MARKS = {"postgresql": [pytest.mark.postgres], "mysql": [pytest.mark.mysql]}


@pytest.fixture(params=[pytest.param(kind, marks=MARKS.get(kind, [])) for kind in CASES])
def case(request: pytest.FixtureRequest) -> SourceCase:
    return CASES[request.param](request)


def capture(source: Source) -> tuple[bytes, dict[str, object]]:
    with source.snapshot() as captured:
        data = b"".join(captured.chunks)
        return data, captured.fingerprint


def test_a_capture_streams_bytes_and_fingerprints_what_it_holds(case: SourceCase) -> None:
    data, fingerprint = capture(case.source)
    assert data and fingerprint
    assert fingerprint.get("tables") or fingerprint.get("files")


def load(case: SourceCase, data: bytes, fingerprint: Fingerprint, target: Target) -> None:
    """Restore ``data`` into ``target`` as the restore action does."""
    if isinstance(case.source, FaithfulRestore):
        case.source.restore_faithfully(
            io.BytesIO(data), target, captured=fingerprint, roles="require"
        )
    else:
        case.source.restore(io.BytesIO(data), target)


def test_a_restored_capture_fingerprints_like_the_source(case: SourceCase) -> None:
    data, fingerprint = capture(case.source)
    assert case.source.is_target_empty(case.empty_target)
    load(case, data, fingerprint, case.empty_target)
    restored = case.source.fingerprint_target(case.empty_target, fingerprint)
    assert compare_fingerprints(fingerprint, restored) == []


def test_a_loaded_target_is_not_empty_describes_itself_and_is_not_replaced_silently(
    case: SourceCase,
) -> None:
    data, _ = capture(case.source)
    case.source.restore(io.BytesIO(data), case.other_target)
    assert not case.source.is_target_empty(case.other_target)
    assert case.source.describe_target(case.other_target)
    with pytest.raises(DrkitError):
        case.source.restore(io.BytesIO(data), case.other_target)
    case.source.restore(io.BytesIO(data), case.other_target, replace=True)


def test_a_truncated_capture_never_restores_to_something_that_passes(case: SourceCase) -> None:
    """A cut-short stream is refused by the restore, or what it loaded fails the fingerprint:
    either way the check can fail, and does."""
    data, fingerprint = capture(case.source)
    try:
        case.source.restore(io.BytesIO(data[: len(data) // 2]), case.empty_target)
    except DrkitError:
        return
    restored = case.source.fingerprint_target(case.empty_target, fingerprint)
    assert compare_fingerprints(fingerprint, restored) != []


def test_databases_answer_a_query_and_file_trees_refuse_one(case: SourceCase) -> None:
    data, _ = capture(case.source)
    case.source.restore(io.BytesIO(data), case.empty_target)
    if case.query is None:
        with pytest.raises(SourceError):
            case.source.query(case.empty_target, "SELECT 1")
    else:
        assert case.source.query(case.empty_target, case.query) == 3


def replacement_of(case: SourceCase) -> Replacement:
    assert case.spec is not None
    return make_replacement(case.spec)


def test_a_loaded_copy_is_swapped_in_and_the_replaced_target_kept_until_removed(
    case: SourceCase,
) -> None:
    data, fingerprint = capture(case.source)
    replacement = replacement_of(case)
    target = case.other_target
    load(case, data, fingerprint, target)
    staged = replacement.beside(target, RESTORING_MARK + "c0ffee")
    previous = replacement.beside(target, PREVIOUS_MARK + "20261207T000000")
    assert RESTORING_MARK in staged.location and PREVIOUS_MARK in previous.location
    assert not replacement.exists(staged) and not replacement.exists(previous)
    load(case, data, fingerprint, staged)
    assert replacement.swap(staged, target, previous) is True
    assert not replacement.exists(staged)
    for place in (target, previous):
        assert compare_fingerprints(fingerprint, case.source.fingerprint_target(place, {})) == []
    assert replacement.removal_command(previous)
    replacement.remove(previous)
    replacement.remove(staged)  # already gone: fine
    assert not replacement.exists(previous) and replacement.exists(target)


def test_a_loaded_copy_swapped_into_a_missing_target_keeps_nothing(case: SourceCase) -> None:
    data, fingerprint = capture(case.source)
    replacement = replacement_of(case)
    target = case.empty_target
    staged = replacement.beside(target, RESTORING_MARK + "c0ffee")
    previous = replacement.beside(target, PREVIOUS_MARK + "20261207T000000")
    load(case, data, fingerprint, staged)
    assert replacement.swap(staged, target, previous) is False
    assert not replacement.exists(previous) and not replacement.exists(staged)
    assert compare_fingerprints(fingerprint, case.source.fingerprint_target(target, {})) == []


def test_only_copies_drkit_named_are_ever_removed(case: SourceCase) -> None:
    data, _ = capture(case.source)
    case.source.restore(io.BytesIO(data), case.other_target)
    with pytest.raises(SourceError, match="not a copy drkit made"):
        replacement_of(case).remove(case.other_target)
    assert replacement_of(case).exists(case.other_target)


def test_the_servers_own_databases_are_refused_as_targets(case: SourceCase) -> None:
    replacement = replacement_of(case)
    assert replacement.refusal(case.empty_target) is None
    if case.system_target is not None:
        assert "system database" in (replacement.refusal(case.system_target) or "")
