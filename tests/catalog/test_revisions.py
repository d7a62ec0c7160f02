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


def every_revision() -> list[str]:
    """Every revision drkit ships, oldest first."""
    from alembic.script import ScriptDirectory

    from drkit.catalog.revisions import make_alembic_config

    script = ScriptDirectory.from_config(make_alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def test_open_creates_every_table_at_head_revision(catalog_url: str) -> None:
    with Catalog.open(catalog_url) as catalog:
        assert catalog.applied_on_open == every_revision()
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
    assert sorted(applied) == [[], [], every_revision()]


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


def test_a_release_0_1_0_catalog_gets_the_one_outcome_vocabulary(catalog_url: str) -> None:
    """Release 0.1.0 recorded drills as passed/error; after the upgrade on open they read
    ok/failed, like every other run."""
    from alembic import command

    from drkit.catalog.revisions import make_alembic_config

    engine = create_engine(resolve_url(catalog_url))
    try:
        with engine.begin() as connection:
            command.upgrade(make_alembic_config(connection), "0001")
            for outcome in ("passed", "error", "breached"):
                connection.execute(
                    text(
                        "INSERT INTO drills (plan, snapshot_id, store, sandbox_kinds, started_at,"
                        " finished_at, outcome, phases, checks) VALUES ('api', 's', 'east', '[]',"
                        " :at, :at, :outcome, '{}', '[]')"
                    ),
                    {"at": "2026-11-27 15:30:00+00:00", "outcome": outcome},
                )
    finally:
        engine.dispose()
    with Catalog.open(catalog_url) as catalog:
        assert catalog.applied_on_open == every_revision()[1:]
        outcomes = sorted(drill.outcome for drill in catalog.list_drills("api"))
    assert outcomes == ["breached", "failed", "ok"]


def test_upgrade_to_0003_counts_the_runs_already_recorded(catalog_url: str) -> None:
    """Run totals start from the history an older catalog holds, not from zero."""
    from alembic import command

    from drkit.catalog.revisions import make_alembic_config

    engine = create_engine(resolve_url(catalog_url))
    try:
        with engine.begin() as connection:
            command.upgrade(make_alembic_config(connection), "0002_outcomes")
            for finished, outcome, summary in (
                ("2026-11-27 15:30:30+00:00", "ok", '{"stored_bytes": 7}'),
                ("2026-11-27 16:30:00+00:00", "ok", None),
                ("2026-11-27 15:30:02+00:00", "failed", None),
                (None, "running", None),
            ):
                connection.execute(
                    text(
                        "INSERT INTO runs (plan, kind, started_at, finished_at, outcome, summary,"
                        " host, pid) VALUES ('api', 'backup', :at, :finished, :outcome,"
                        " :summary, 'h', 1)"
                    ),
                    {
                        "at": "2026-11-27 15:30:00+00:00",
                        "finished": finished,
                        "outcome": outcome,
                        "summary": summary,
                    },
                )
    finally:
        engine.dispose()
    with Catalog.open(catalog_url) as catalog:
        totals = catalog.run_totals(["api"])
    ok = totals[("api", "backup", "ok")]
    assert (ok.runs, ok.bytes, ok.seconds) == (2, 7, 3630.0)
    assert (ok.buckets[15.0], ok.buckets[60.0], ok.buckets[3600.0]) == (0, 1, 2)
    assert totals[("api", "backup", "failed")].runs == 1
    assert ("api", "backup", "running") not in totals


def test_upgrade_to_0003_counts_the_good_copies_of_snapshots_already_recorded(
    catalog_url: str,
) -> None:
    """A catalog from before 0003 keeps its policy-meeting snapshot: its copies are counted."""
    from alembic import command

    from drkit.catalog import PlanPolicy
    from drkit.catalog.revisions import make_alembic_config

    engine = create_engine(resolve_url(catalog_url))
    try:
        with engine.begin() as connection:
            command.upgrade(make_alembic_config(connection), "0002_outcomes")
            connection.execute(
                text(
                    "INSERT INTO snapshots (id, plan, taken_at, status, size, plaintext_size,"
                    " sources) VALUES ('s1', 'api', '2026-11-27 15:30:00+00:00', 'complete',"
                    " 1, 1, '[]')"
                )
            )
            for store, region, status, verified in (
                ("east", "us-east-1", "complete", None),
                ("west", "eu-west-1", "complete", True),
                ("nfs", "eu-west-1", "complete", False),  # found damaged: does not count
                ("old", "ap-south-1", "deleted", None),
            ):
                connection.execute(
                    text(
                        "INSERT INTO copies (snapshot_id, store, region, status, bytes,"
                        " last_verify_ok) VALUES ('s1', :store, :region, :status, 1, :verified)"
                    ),
                    {"store": store, "region": region, "status": status, "verified": verified},
                )
    finally:
        engine.dispose()
    with Catalog.open(catalog_url) as catalog:
        two = catalog.plan_states([PlanPolicy("api", 2, 2)])["api"].newest_complete
        three = catalog.plan_states([PlanPolicy("api", 3, 1)])["api"].newest_complete
    assert two is not None and two.id == "s1"
    assert three is None
