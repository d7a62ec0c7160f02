"""PostgresqlDatabase against the real server: capture, restore, fingerprints, failure paths."""

from __future__ import annotations

import io
import mmap
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from drkit.errors import SourceError
from drkit.plan.schema import PostgresqlSource
from drkit.secrets import Secret
from drkit.sources import pgarchive
from drkit.sources.base import Capture, Target, compare_fingerprints
from drkit.sources.postgresql import (
    LARGE_OBJECTS_TABLE,
    PostgresqlDatabase,
    make_dump_command,
    make_restore_command,
    password_file,
)
from drkit.sources.urls import parse_database_url

pytestmark = pytest.mark.postgres

RICH_SCHEMA = r"""
CREATE SCHEMA app;
CREATE TYPE app.status AS ENUM ('new', 'paid', 'shipped');
CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
CREATE SEQUENCE app.invoice_numbers START 1000 INCREMENT 7 MINVALUE 1000 MAXVALUE 999999 CYCLE;
CREATE TABLE app.customers (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    email text UNIQUE,
    tags text[],
    profile jsonb,
    raw json,
    avatar bytea,
    created timestamptz DEFAULT now()
);
CREATE TABLE app."Order Items" (
    id bigserial PRIMARY KEY,
    customer_id integer REFERENCES app.customers (id) ON DELETE CASCADE,
    status app.status NOT NULL DEFAULT 'new',
    quantity app.positive,
    invoice integer DEFAULT nextval('app.invoice_numbers'),
    scores numeric(8, 2)[],
    note text
);
CREATE INDEX order_items_status ON app."Order Items" (status) WHERE note IS NOT NULL;
CREATE TABLE public.audit (id serial PRIMARY KEY, item_id bigint, happened text);
CREATE FUNCTION app.record_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit (item_id, happened) VALUES (NEW.id, TG_OP);
    RETURN NEW;
END $$;
CREATE TRIGGER order_items_audit AFTER INSERT ON app."Order Items"
    FOR EACH ROW EXECUTE FUNCTION app.record_audit();
CREATE FUNCTION app.total(customer integer) RETURNS bigint LANGUAGE sql STABLE
    AS 'SELECT count(*) FROM app."Order Items" WHERE customer_id = customer';
CREATE VIEW app.customer_totals AS
    SELECT c.name, app.total(c.id) AS items FROM app.customers c;
CREATE MATERIALIZED VIEW app.status_counts AS
    SELECT status, count(*) AS n FROM app."Order Items" GROUP BY status;
CREATE TABLE public.empty_table (x int);
"""

RICH_DATA = r"""
INSERT INTO app.customers (name, email, tags, profile, raw, avatar)
SELECT 'Kundin ' || g || ' Ærøskøbing 東京 😀', 'c' || g || '@example.org',
       ARRAY['tag' || (g % 5), NULL, 'ü'],
       jsonb_build_object('n', g, 'nested', jsonb_build_array(1, 'zwei', NULL)),
       '{"keep": "formatting",  "spaces": true}',
       decode(repeat(md5(g::text), 20), 'hex')
FROM generate_series(1, 3000) g;
INSERT INTO app.customers (name, email) VALUES ('Nulls everywhere', NULL);
INSERT INTO app."Order Items" (customer_id, status, quantity, scores, note)
SELECT (g % 3000) + 1, (ARRAY['new', 'paid', 'shipped'])[(g % 3) + 1]::app.status, (g % 9) + 1,
       ARRAY[g * 1.5, NULL], CASE WHEN g % 4 = 0 THEN NULL ELSE repeat('note ', 30) || g END
FROM generate_series(1, 6000) g;
SELECT setval('app.invoice_numbers', 424242);
REFRESH MATERIALIZED VIEW app.status_counts;
SELECT lo_from_bytea(0, decode(repeat('00ff7f80', 2048), 'hex'));
"""


def make_source(url: str, jobs: int = 2) -> PostgresqlDatabase:
    return PostgresqlDatabase(
        PostgresqlSource(name="orders", type="postgresql", url=url, jobs=jobs)
    )


def execute(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statements.encode())


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(query.encode()).fetchone()
    return row[0] if row else None


def plain_dump(url: str) -> str:
    """The engine's own view of a database: schema and data as plain SQL, names normalized."""
    database = parse_database_url(url).database
    assert database is not None
    completed = subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", "--dbname", url],
        check=True,
        capture_output=True,
    )
    text = completed.stdout.decode()
    return "\n".join(
        line.replace(database, "DB")
        for line in text.splitlines()
        if not line.startswith("\\restrict") and not line.startswith("\\unrestrict")
    )


def capture_bytes(source: PostgresqlDatabase) -> tuple[bytes, Capture]:
    with source.snapshot() as capture:
        data = b"".join(capture.chunks)
    return data, capture


@pytest.fixture
def new_database_url(postgres_server: str) -> Iterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards if a test made it."""
    url = f"{postgres_server}/drkit_restored_{secrets.token_hex(4)}"
    yield url
    name = parse_database_url(url).database
    execute(f"{postgres_server}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def rich_database(postgres_database: str) -> str:
    execute(postgres_database, RICH_SCHEMA)
    execute(postgres_database, RICH_DATA)
    return postgres_database


# --- pure command builders ---------------------------------------------------------------------


def test_dump_command_streams_uncompressed_custom_archive_with_password_only_in_a_file() -> None:
    url = parse_database_url("postgresql://backup@db.internal:5433/orders?sslmode=require")
    command = make_dump_command(url, snapshot_id="00000003-1B", password=Secret("s3cret"))
    assert command.argv == (
        "pg_dump",
        "--format=custom",
        "--compress=0",
        "--blobs",
        "--snapshot=00000003-1B",
        "--dbname=postgresql://backup@db.internal:5433/orders?sslmode=require",
    )
    assert command.secret_files["PGPASSFILE"].reveal() == "*:*:*:*:s3cret\n"
    assert not any("s3cret" in value for value in command.env.values())
    assert not any("s3cret" in argument for argument in command.argv)
    assert "s3cret" not in command.describe()


def test_restore_command_runs_parallel_jobs_without_owners_or_privileges() -> None:
    url = parse_database_url("postgresql://postgres@127.0.0.1:5432/sandbox")
    command = make_restore_command(url, Path("/tmp/x/restore.pgdump"), jobs=4, password=None)
    assert command.argv == (
        "pg_restore",
        "--jobs=4",
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--dbname=postgresql://postgres@127.0.0.1:5432/sandbox",
        "/tmp/x/restore.pgdump",
    )
    assert "PGPASSWORD" not in command.env and not command.secret_files


def test_password_file_escapes_colons_and_backslashes_and_refuses_line_breaks() -> None:
    assert password_file(Secret("a:b\\c")) == {"PGPASSFILE": Secret("*:*:*:*:a\\:b\\\\c\n")}
    with pytest.raises(SourceError, match="line break"):
        password_file(Secret("a\nb"))


# --- capture and restore -----------------------------------------------------------------------


def test_restore_into_missing_database_creates_it_and_reproduces_source_exactly(
    rich_database: str, new_database_url: str
) -> None:
    source = make_source(rich_database)
    data, capture = capture_bytes(source)
    target = Target(new_database_url)
    assert source.is_target_empty(target)
    assert "does not exist" in source.describe_target(target)

    source.restore(io.BytesIO(data), target)

    assert data.startswith(b"PGDMP")
    assert capture.extension == "pgdump" and capture.format == "pg_dump-custom"
    assert capture.tool_versions["pg_dump"][:2].isdigit()
    assert capture.fingerprint["tables"]["app.Order Items"] == 6000
    assert capture.fingerprint["tables"]["public.audit"] == 6000
    assert capture.fingerprint["tables"]["public.empty_table"] == 0
    assert capture.fingerprint["tables"][LARGE_OBJECTS_TABLE] == 1
    restored = source.fingerprint_target(target, capture.fingerprint)
    assert compare_fingerprints(capture.fingerprint, restored) == []
    assert restored == capture.fingerprint
    assert plain_dump(new_database_url) == plain_dump(rich_database)
    assert scalar(new_database_url, "SELECT last_value FROM app.invoice_numbers") == 424242
    assert (
        scalar(new_database_url, "SELECT length(lo_get(oid)) FROM pg_largeobject_metadata") == 8192
    )


def test_fingerprint_names_the_table_whose_row_count_changed(rich_database: str) -> None:
    source = make_source(rich_database)
    with source.snapshot() as capture:
        for _ in capture.chunks:
            pass
    execute(rich_database, "DELETE FROM app.customers WHERE name = 'Nulls everywhere'")

    now = source.fingerprint_target(source.default_target(), capture.fingerprint)

    assert compare_fingerprints(capture.fingerprint, now) == [
        "table app.customers: expected 3001, found 3000"
    ]


def test_schema_hash_changes_when_a_column_is_added(rich_database: str) -> None:
    source = make_source(rich_database)
    before = source.fingerprint_target(source.default_target(), {})
    execute(rich_database, "ALTER TABLE public.audit ADD COLUMN extra int")
    after = source.fingerprint_target(source.default_target(), {})
    assert before["tables"] == after["tables"]
    assert "schema differs from the one captured at backup time" in compare_fingerprints(
        before, after
    )


def test_rows_committed_while_the_dump_streams_are_neither_counted_nor_dumped(
    rich_database: str, new_database_url: str
) -> None:
    source = make_source(rich_database)
    with source.snapshot() as capture:
        # Committed after the snapshot was exported, before pg_dump has read the table.
        execute(
            rich_database,
            "INSERT INTO public.audit (happened) SELECT 'late' FROM generate_series(1, 50)",
        )
        execute(rich_database, "DELETE FROM app.customers WHERE id <= 10")
        data = b"".join(capture.chunks)
    source.restore(io.BytesIO(data), Target(new_database_url))

    restored = source.fingerprint_target(Target(new_database_url), capture.fingerprint)

    assert compare_fingerprints(capture.fingerprint, restored) == []
    assert capture.fingerprint["tables"]["public.audit"] == 6000
    assert scalar(rich_database, "SELECT count(*) FROM public.audit") == 6050


def test_fingerprint_taken_beside_the_dump_is_complete_once_the_stream_ends(
    rich_database: str,
) -> None:
    source = make_source(rich_database)
    with source.snapshot() as capture:
        assert capture.fingerprint == {}  # counted while pg_dump streams, filled in at its end
        execute(rich_database, "DELETE FROM public.audit WHERE id <= 100")
        for _ in capture.chunks:
            pass
    assert capture.fingerprint["tables"]["public.audit"] == 6000
    assert capture.fingerprint["schema_sha256"]
    assert scalar(rich_database, "SELECT count(*) FROM public.audit") == 5900


def test_restore_with_replace_drops_what_the_target_held(
    rich_database: str, new_database_url: str
) -> None:
    source = make_source(rich_database)
    data, capture = capture_bytes(source)
    execute(
        new_database_url.rsplit("/", 1)[0] + "/postgres",
        f'CREATE DATABASE "{parse_database_url(new_database_url).database}"',
    )
    execute(new_database_url, "CREATE TABLE stray (x int); INSERT INTO stray VALUES (1)")
    target = Target(new_database_url)
    assert not source.is_target_empty(target)
    assert "1 tables" in source.describe_target(target)

    source.restore(io.BytesIO(data), target, replace=True)

    assert compare_fingerprints(capture.fingerprint, source.fingerprint_target(target, {})) == []
    assert scalar(new_database_url, "SELECT to_regclass('public.stray') IS NULL") is True


def test_restore_into_non_empty_database_without_replace_fails_with_source_error(
    rich_database: str,
) -> None:
    source = make_source(rich_database)
    data, _ = capture_bytes(source)
    with pytest.raises(
        SourceError, match=r"restoring orders into .* failed: schema \"app\" already exists"
    ):
        source.restore(io.BytesIO(data), source.default_target())


def test_existing_empty_database_counts_as_empty(postgres_database: str) -> None:
    source = make_source(postgres_database)
    assert source.is_target_empty(source.default_target())
    execute(postgres_database, "CREATE SEQUENCE lonely")
    assert not source.is_target_empty(source.default_target())


def test_large_object_alone_makes_a_database_non_empty(postgres_database: str) -> None:
    source = make_source(postgres_database)
    execute(postgres_database, "SELECT lo_from_bytea(0, 'x')")
    assert not source.is_target_empty(source.default_target())
    assert "1 large objects" in source.describe_target(source.default_target())


# --- failure paths -----------------------------------------------------------------------------


def child_pids(name: str) -> list[int]:
    """Children of this test process running ``name`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == os.getpid() and command == name:
            found.append(int(entry.name))
    return found


def test_pg_dump_killed_mid_stream_raises_source_error(rich_database: str) -> None:
    source = make_source(rich_database)
    with source.snapshot() as capture:
        first = next(capture.chunks)
        [pid] = child_pids("pg_dump")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(
            SourceError, match="pg_dump of orders failed: pg_dump was killed by SIGKILL"
        ):
            for _ in capture.chunks:
                pass
    assert first.startswith(b"PGDMP")
    assert child_pids("pg_dump") == []


def test_abandoned_capture_leaves_no_pg_dump_running(rich_database: str) -> None:
    source = make_source(rich_database)
    with source.snapshot() as capture:
        next(capture.chunks)
        assert len(child_pids("pg_dump")) == 1
    assert child_pids("pg_dump") == []


def test_unreachable_server_is_a_one_line_source_error() -> None:
    source = make_source("postgresql://postgres@127.0.0.1:1/orders")
    with (
        pytest.raises(
            SourceError, match=r"cannot connect to postgresql://postgres@127\.0\.0\.1:1/orders"
        ) as caught,
        source.snapshot(),
    ):
        pass
    assert "\n" not in caught.value.message


# --- query -------------------------------------------------------------------------------------


def test_query_returns_the_first_value(rich_database: str) -> None:
    source = make_source(rich_database)
    assert source.query(source.default_target(), "SELECT count(*) FROM app.customers") == 3001
    assert source.query(source.default_target(), "SELECT 1 WHERE false") is None


def test_query_cannot_write(rich_database: str) -> None:
    source = make_source(rich_database)
    with pytest.raises(SourceError, match="read-only transaction"):
        source.query(source.default_target(), "DELETE FROM public.audit RETURNING 1")
    assert scalar(rich_database, "SELECT count(*) FROM public.audit") == 6000


# --- data offsets of a staged archive ----------------------------------------------------------


def dump_twice(url: str, folder: Path) -> tuple[Path, Path]:
    """The same snapshot dumped through a pipe (no offsets) and to a file (pg_dump's own)."""
    piped, filed = folder / "piped.pgdump", folder / "filed.pgdump"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        row = connection.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        dump = ["pg_dump", "-Fc", "-Z0", f"--snapshot={row[0]}", f"--dbname={url}"]
        piped.write_bytes(subprocess.run(dump, capture_output=True, check=True).stdout)
        subprocess.run([*dump, f"--file={filed}"], check=True)
    return piped, filed


def data_offsets(path: Path) -> dict[int, tuple[int, int]]:
    """Each data entry of the archive's TOC: (offset flag, offset), by dump id."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        reader = pgarchive._Reader(data)
        _, offset_size = pgarchive._read_header(reader)
        return {
            entry.dump_id: (
                data[entry.offset_field],
                int.from_bytes(data[entry.offset_field + 1 : entry.offset_field + 1 + offset_size], "little"),
            )
            for entry in pgarchive._read_toc(reader, offset_size)
        }  # fmt: skip


@pytest.mark.parametrize("window", [pgarchive.RELEASE_BYTES, mmap.PAGESIZE])
@pytest.mark.parametrize("method", ["walk", "search"])
def test_offsets_added_to_a_piped_archive_are_the_ones_pg_dump_writes_to_a_file(
    rich_database: str, tmp_path: Path, method: str, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A window of one page: blocks found across windows, pages released as the search goes.
    monkeypatch.setattr(pgarchive, "RELEASE_BYTES", window)
    piped, filed = dump_twice(rich_database, tmp_path)
    expected = data_offsets(filed)
    assert {flag for flag, _ in data_offsets(piped).values()} == {pgarchive.OFFSET_NOT_SET}

    pgarchive.add_offsets(piped, method=method)

    assert data_offsets(piped) == expected
    assert {flag for flag, _ in expected.values()} == {pgarchive.OFFSET_SET}
    assert len(expected) >= 5  # the tables, the materialized view, the large objects


def test_an_archive_that_cannot_be_understood_is_left_as_it_is(
    rich_database: str, tmp_path: Path
) -> None:
    piped, _ = dump_twice(rich_database, tmp_path)
    whole = piped.read_bytes()
    for damaged in (whole[:5] + bytes([1, 99]) + whole[7:], whole[:400]):  # version, cut TOC
        piped.write_bytes(damaged)

        assert pgarchive.index_archive(piped) is None
        assert piped.read_bytes() == damaged


def test_a_staging_file_is_loaded_in_place_and_a_pipe_through_a_private_copy(
    tmp_path: Path,
) -> None:
    staged = tmp_path / "artifact.plain"
    staged.write_bytes(b"not an archive")
    with staged.open("rb") as stream, pgarchive.seekable_archive(stream) as archive:
        assert archive == staged
    with io.BufferedReader(io.BytesIO(b"not an archive")) as stream:  # type: ignore[arg-type]
        with pgarchive.seekable_archive(stream) as archive:
            assert archive != staged and archive.read_bytes() == b"not an archive"
            assert (archive.parent.stat().st_mode & 0o777) == 0o700
        assert not archive.exists()


def test_a_failed_pg_restore_is_explained_by_its_first_error_not_a_dead_worker() -> None:
    from drkit.sources.pg_fidelity import explain_restore_failure

    stderr = (
        'pg_restore: error: could not execute query: ERROR:  role "app_rw" does not exist\n'
        "Command was: CREATE POLICY tenant_rows ON app.orders TO app_rw USING (true);\n"
        "pg_restore: error: a worker process died unexpectedly\n"
    )
    cause, hint = explain_restore_failure(stderr)
    assert cause == 'role "app_rw" does not exist'
    assert "--roles create" in hint and "app_rw" in hint
