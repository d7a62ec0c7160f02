"""The SQLite source: consistent online snapshots, integrity checks on capture and restore, and
safe restores (atomic, never over a database without replace)."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
import tempfile
import threading
import typing
from pathlib import Path

import pytest

from drkit.errors import RefusedError, SourceError
from drkit.plan.schema import SourceSpec, SqliteSource
from drkit.sources import SOURCE_FACTORIES, make_source
from drkit.sources.base import Target, compare_fingerprints
from drkit.sources.sqlite import SqliteDatabase


def make_database(path: Path, orders: int = 3) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        PRAGMA journal_mode = WAL;
        CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER NOT NULL);
        CREATE TABLE order_lines (id INTEGER PRIMARY KEY, order_id INTEGER, sku TEXT);
        CREATE INDEX order_lines_by_order ON order_lines (order_id);
        """
    )
    for number in range(orders):
        insert_order(connection, number)
    connection.commit()
    connection.close()


def insert_order(connection: sqlite3.Connection, total: int) -> None:
    """One order and its two lines, in whatever transaction the caller holds."""
    cursor = connection.execute("INSERT INTO orders (total) VALUES (?)", (total,))
    for sku in ("a", "b"):
        connection.execute(
            "INSERT INTO order_lines (order_id, sku) VALUES (?, ?)", (cursor.lastrowid, sku)
        )


def source_for(path: Path) -> SqliteDatabase:
    return SqliteDatabase(SqliteSource(name="sessions", type="sqlite", path=str(path)))


def capture_bytes(source: SqliteDatabase) -> tuple[bytes, dict[str, object]]:
    with source.snapshot() as capture:
        data = b"".join(capture.chunks)
        return data, capture.fingerprint


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    make_database(path)
    return path


def test_source_registry_has_a_factory_for_every_source_type_in_the_schema() -> None:
    union = typing.get_args(SourceSpec)[0]
    schema_types = {
        typing.get_args(model.model_fields["type"].annotation)[0]
        for model in typing.get_args(union)
    }
    assert set(SOURCE_FACTORIES) == schema_types == {"postgresql", "mysql", "sqlite", "files"}


def test_make_source_builds_a_sqlite_database_for_a_sqlite_spec(database: Path) -> None:
    spec = SqliteSource(name="sessions", type="sqlite", path=str(database))
    assert isinstance(make_source(spec), SqliteDatabase)


def test_snapshot_while_the_application_writes_is_consistent_and_counts_match_the_copy(
    database: Path, tmp_path: Path
) -> None:
    stop = threading.Event()
    written = [0]

    def keep_writing() -> None:
        connection = sqlite3.connect(database, timeout=30)
        while not stop.is_set():
            with connection:  # one transaction: an order and both its lines
                insert_order(connection, written[0])
            written[0] += 1
        connection.close()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while written[0] < 50 and writer.is_alive():
            stop.wait(0.01)
        data, fingerprint = capture_bytes(source_for(database))
        while written[0] < 100 and writer.is_alive():  # the application goes on
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()

    tables = fingerprint["tables"]
    assert isinstance(tables, dict)
    assert tables["order_lines"] == 2 * tables["orders"]  # no half-committed transaction
    assert tables["orders"] >= 3 + 50
    target = Target(str(tmp_path / "restored" / "app.db"))
    source_for(database).restore(io.BytesIO(data), target, captured=fingerprint)
    restored = source_for(database).fingerprint_target(target, fingerprint)
    assert restored["tables"] == tables
    assert compare_fingerprints(fingerprint, restored) == []
    assert source_for(database).fingerprint_target(Target(str(database)), {})["tables"] != tables


def test_snapshot_fingerprint_names_tables_schema_and_sqlite_version(database: Path) -> None:
    _, fingerprint = capture_bytes(source_for(database))
    assert fingerprint["tables"] == {"order_lines": 6, "orders": 3}
    assert isinstance(fingerprint["schema_sha256"], str) and len(fingerprint["schema_sha256"]) == 64
    assert fingerprint["server_version"] == sqlite3.sqlite_version


def test_snapshot_removes_its_temporary_copy(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with source_for(database).snapshot() as capture:
        assert list(scratch.iterdir())  # the copy lives there while streaming
        next(capture.chunks)
    assert list(scratch.iterdir()) == []


def corrupt_index(path: Path) -> None:
    """Point the index's definition at another column: the index no longer matches its table,
    which PRAGMA integrity_check reports while the file still opens and copies."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA writable_schema = ON")
    connection.execute(
        "UPDATE sqlite_master SET sql = 'CREATE INDEX order_lines_by_order ON order_lines (sku)' "
        "WHERE name = 'order_lines_by_order'"
    )
    connection.commit()
    connection.close()


def test_snapshot_of_a_corrupt_database_fails_integrity_check(database: Path) -> None:
    corrupt_index(database)
    with pytest.raises(SourceError, match="integrity_check"), source_for(database).snapshot():
        pass


def test_snapshot_of_a_missing_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "gone.db"
    with pytest.raises(SourceError, match="does not exist") as raised:
        source_for(missing).snapshot().__enter__()
    assert "path" in raised.value.hint
    assert not missing.exists()


def test_restore_of_a_corrupt_copy_fails_and_leaves_no_file(database: Path, tmp_path: Path) -> None:
    corrupt_index(database)
    target = tmp_path / "restored.db"
    with pytest.raises(SourceError, match="integrity_check"):
        source_for(database).restore(io.BytesIO(database.read_bytes()), Target(str(target)))
    assert list(tmp_path.glob("restored.db*")) == []
    assert list(tmp_path.glob(".restored.db*")) == []


def test_restore_of_bytes_that_are_not_a_database_fails(tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    with pytest.raises(SourceError):
        source_for(target).restore(io.BytesIO(b"not a database" * 100), Target(str(target)))
    assert not target.exists()


def test_restore_refuses_a_non_empty_database_without_replace(
    database: Path, tmp_path: Path
) -> None:
    data, _ = capture_bytes(source_for(database))
    other = tmp_path / "other.db"
    make_database(other, orders=7)
    source = source_for(database)
    assert not source.is_target_empty(Target(str(other)))
    with pytest.raises(RefusedError):
        source.restore(io.BytesIO(data), Target(str(other)))
    assert source.fingerprint_target(Target(str(other)), {})["tables"]["orders"] == 7

    source.restore(io.BytesIO(data), Target(str(other)), replace=True)
    assert source.fingerprint_target(Target(str(other)), {})["tables"]["orders"] == 3
    assert "2 tables, 9 rows" in source.describe_target(Target(str(other)))


def test_missing_or_zero_length_target_counts_as_empty(tmp_path: Path) -> None:
    source = source_for(tmp_path / "x.db")
    assert source.is_target_empty(Target(str(tmp_path / "missing.db")))
    (tmp_path / "zero.db").touch()
    assert source.is_target_empty(Target(str(tmp_path / "zero.db")))
    (tmp_path / "text.db").write_text("precious notes")
    assert not source.is_target_empty(Target(str(tmp_path / "text.db")))


def test_query_returns_the_first_value_and_cannot_write(database: Path) -> None:
    source = source_for(database)
    target = Target(str(database))
    assert source.query(target, "SELECT count(*) FROM orders") == 3
    assert source.query(target, "SELECT total FROM orders WHERE id = -1") is None
    with pytest.raises(SourceError, match="readonly"):
        source.query(target, "INSERT INTO orders (total) VALUES (1)")
    assert source.query(target, "SELECT count(*) FROM orders") == 3


IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def test_restore_keeps_the_captured_mode_and_verification_checks_it(
    database: Path, tmp_path: Path
) -> None:
    database.chmod(0o640)
    source = source_for(database)
    data, fingerprint = capture_bytes(source)
    assert fingerprint["file"] == {
        "mode": "0640",
        "uid": database.stat().st_uid,
        "gid": database.stat().st_gid,
    }
    target = tmp_path / "restored" / "app.db"
    source.restore(io.BytesIO(data), Target(str(target)), captured=fingerprint)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert (
        compare_fingerprints(
            fingerprint, source.fingerprint_target(Target(str(target)), fingerprint)
        )
        == []
    )
    target.chmod(0o600)
    assert compare_fingerprints(
        fingerprint, source.fingerprint_target(Target(str(target)), fingerprint)
    ) == ["file mode: expected 0640, found 0600"]


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another owner")
def test_restore_in_place_as_root_gives_the_file_back_to_its_owner(database: Path) -> None:
    database.chmod(0o640)
    os.chown(database, NOBODY, NOBODY)
    source = source_for(database)
    data, fingerprint = capture_bytes(source)
    os.chown(database, 0, 0)  # as if an earlier restore had taken it over
    database.chmod(0o600)
    source.restore(io.BytesIO(data), Target(str(database)), replace=True, captured=fingerprint)
    status = database.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert (
        compare_fingerprints(
            fingerprint, source.fingerprint_target(Target(str(database)), fingerprint)
        )
        == []
    )
    os.chown(database, 0, NOBODY)
    [problem] = compare_fingerprints(
        fingerprint, source.fingerprint_target(Target(str(database)), fingerprint)
    )
    assert problem == f"file uid: expected {NOBODY}, found 0"


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a file to another owner")
def test_a_snapshot_without_mode_and_owner_keeps_those_of_the_file_it_replaces(
    database: Path,
) -> None:
    source = source_for(database)
    data, fingerprint = capture_bytes(source)
    old = {key: value for key, value in fingerprint.items() if key != "file"}  # drkit 0.1.0
    database.chmod(0o660)
    os.chown(database, NOBODY, NOBODY)
    source.restore(io.BytesIO(data), Target(str(database)), replace=True, captured=old)
    status = database.stat()
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (NOBODY, 0o660)
    assert compare_fingerprints(old, source.fingerprint_target(Target(str(database)), old)) == []
