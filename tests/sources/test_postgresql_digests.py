"""Content digests per table, read from the pg_dump stream during the backup and recomputed
from the restored database: equal for a faithful restore of awkward data (every common type,
escapes, NULLs, a generated and a dropped column, an empty table, partitions, a large
object); a changed value with the same row count is named; a stream drkit cannot read gives
no digests rather than wrong ones."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from drkit.plan.schema import PostgresqlSource
from drkit.sources.base import Target, compare_fingerprints
from drkit.sources.pg_digest import StreamDigests
from drkit.sources.postgresql import PostgresqlDatabase

pytestmark = pytest.mark.postgres

SETUP = r"""
CREATE TABLE kinds (id serial PRIMARY KEY, t text, n numeric(12, 4), f float8, r real,
    ts timestamptz, d date, i interval, b bytea, j jsonb, a text[], u uuid, flag boolean,
    gone int, doubled int GENERATED ALWAYS AS (id * 2) STORED);
ALTER TABLE kinds DROP COLUMN gone;
INSERT INTO kinds (t, n, f, r, ts, d, i, b, j, a, u, flag) VALUES
  (E'tab\there\nnewline \\ backslash \\. dot', 1.5, 0.1, 1e-7, '2026-12-07 03:00:00+05',
   '2026-01-01', '1 day 2 hours', '\x00ff', '{"k": [1, 2]}', ARRAY['x', NULL],
   '6b2d3a1e-0000-4000-8000-000000000001', true),
  (NULL, NULL, 'NaN', '-Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ('Ærø 東京 😀', 123456.789, 1.0000000000000002, 3.14159, now(), 'infinity', '-1 year',
   '', 'null', '{}', NULL, false);
INSERT INTO kinds (t) SELECT repeat(md5(g::text), 20) FROM generate_series(1, 3000) g;
CREATE TABLE empty_one (id int);
CREATE TABLE measurements (at date NOT NULL, v int) PARTITION BY RANGE (at);
CREATE TABLE measurements_2026 PARTITION OF measurements
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurements SELECT '2026-01-01'::date + g % 300, g FROM generate_series(1, 500) g;
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed Case" ("Col" text);
INSERT INTO "Odd Schema"."Mixed Case" VALUES ('a'), ('b');
SELECT lo_from_bytea(0, 'large object');
"""


@pytest.fixture
def database(postgres_server: str) -> Iterator[str]:
    name = f"drkit_digest_{secrets.token_hex(4)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    url = f"{postgres_server}/{name}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    yield url
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
        for (database,) in connection.execute(query, (name,)).fetchall():
            connection.execute(f'DROP DATABASE "{database}" WITH (FORCE)'.encode())


def _captured(url: str) -> tuple[PostgresqlDatabase, bytes, dict[str, object]]:
    source = PostgresqlDatabase(PostgresqlSource(name="kinds", type="postgresql", url=url))
    with source.snapshot() as capture:
        data = b"".join(capture.chunks)
        return source, data, capture.fingerprint


def test_every_table_gets_a_digest_from_the_dump_stream(database: str) -> None:
    _, _, fingerprint = _captured(database)
    digests = fingerprint["digests"]
    assert isinstance(digests, dict)
    expected = {"public.kinds", "public.empty_one", "public.measurements_2026"}
    assert expected | {"Odd Schema.Mixed Case"} == set(digests)
    assert len(set(digests.values())) == len(digests)


def test_a_restored_copy_recomputes_the_same_digests(database: str) -> None:
    source, data, fingerprint = _captured(database)
    target = Target(f"{database}_copy")
    source.restore(io.BytesIO(data), target)
    restored = source.fingerprint_target(target, fingerprint)
    assert restored["digests"] == fingerprint["digests"]
    assert compare_fingerprints(fingerprint, restored) == []


def test_a_changed_value_with_the_same_row_count_is_named(database: str) -> None:
    source, data, fingerprint = _captured(database)
    target = Target(f"{database}_copy")
    source.restore(io.BytesIO(data), target)
    with psycopg.connect(target.location, autocommit=True) as connection:
        connection.execute("UPDATE kinds SET n = n + 1 WHERE id = 1")
    differences = compare_fingerprints(fingerprint, source.fingerprint_target(target, fingerprint))
    assert differences == ["table public.kinds: content differs from the backup (same row count)"]


def test_the_digests_do_not_depend_on_how_the_stream_is_cut(database: str) -> None:
    _, data, fingerprint = _captured(database)
    for size in (1, 7, 4096):
        digests = StreamDigests()
        for start in range(0, len(data), size):
            digests.feed(data[start : start + size])
        assert digests.finish() == fingerprint["digests"]


def test_a_stream_drkit_cannot_read_gives_no_digests(database: str) -> None:
    _, data, _ = _captured(database)
    digests = StreamDigests()
    digests.feed(data[:5] + bytes([9]) + data[6:])  # an archive version from the future
    assert digests.finish() == {}
