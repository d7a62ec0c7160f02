"""Schema migrations: created on open, idempotent, safe under concurrent opens, and in
agreement with the models."""

from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from drkit.catalog import Catalog, head_revision
from drkit.catalog.database import resolve_url
from drkit.catalog.models import Base
from drkit.errors import CatalogError

TABLES = {"runs", "snapshots", "artifacts", "copies", "drills", "locks", "alembic_version"}


def read_versions(url: str) -> list[str]:
    engine = create_engine(resolve_url(url))
    try:
        with engine.connect() as connection:
            return list(connection.scalars(text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


def test_open_creates_every_table_at_head_revision(catalog_url: str) -> None:
    with Catalog.open(catalog_url) as catalog:
        assert catalog.applied_on_open == [head_revision()]
        assert catalog.current_revision() == head_revision()
    engine = create_engine(resolve_url(catalog_url))
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(catalog_url: str) -> None:
    Catalog.open(catalog_url).close()
    engine = create_engine(resolve_url(catalog_url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_second_upgrade_applies_nothing_and_keeps_version_row(catalog_url: str) -> None:
    with Catalog.open(catalog_url) as catalog:
        before = read_versions(catalog_url)
        assert catalog.upgrade() == []
        assert read_versions(catalog_url) == before == [head_revision()]
    with Catalog.open(catalog_url) as reopened:
        assert reopened.applied_on_open == []


def test_concurrent_opens_migrate_exactly_once(catalog_url: str) -> None:
    applied: list[list[str]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(3)

    def open_catalog() -> None:
        barrier.wait()
        try:
            with Catalog.open(catalog_url) as catalog:
                applied.append(catalog.applied_on_open)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_catalog) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(applied) == [[], [], [head_revision()]]


def test_catalog_newer_than_drkit_is_refused(catalog_url: str) -> None:
    Catalog.open(catalog_url).close()
    engine = create_engine(resolve_url(catalog_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(CatalogError) as raised:
        Catalog.open(catalog_url)
    assert "9999" in raised.value.message
    assert "upgrade drkit" in raised.value.hint


def test_head_constant_matches_the_newest_migration() -> None:
    from drkit.catalog.revisions import HEAD_REVISION

    assert head_revision() == HEAD_REVISION, "update HEAD_REVISION with each new migration"
