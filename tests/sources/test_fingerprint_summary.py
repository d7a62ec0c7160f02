"""The one-line summary of a fingerprint (the drill's `fingerprint SOURCE = ...` line) counts
tables as tables: PostgreSQL's large-object entry is reported as large objects."""

from __future__ import annotations

import psycopg

from drkit.sources.base import LARGE_OBJECTS_TABLE, describe_fingerprint
from drkit.sources.postgresql import connect, take_fingerprint
from drkit.sources.urls import parse_database_url


def test_four_tables_and_a_large_object_read_as_four_tables_and_one_large_object(
    postgres_database: str,
) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for name in ("orders", "customers", "refunds", "invoices"):
            connection.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
        connection.execute("SELECT lo_from_bytea(0, 'scan of a signed contract')")
    with connect(parse_database_url(postgres_database), None) as connection:
        fingerprint = take_fingerprint(connection)
    assert len(fingerprint["tables"]) == 5  # the large-object count rides along as an entry
    assert describe_fingerprint(fingerprint) == "4 tables, 1 large object"


def test_summaries_of_files_and_of_empty_databases() -> None:
    assert describe_fingerprint({"files": {"a": "x", "b": "y", "c": "z"}}) == "3 files"
    assert describe_fingerprint({"tables": {LARGE_OBJECTS_TABLE: 0}}) == "0 tables"
    assert describe_fingerprint({"tables": {"main.orders": 3}}) == "1 table"
