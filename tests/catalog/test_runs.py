"""Run records: opened as running, closed with an honest outcome, listed newest first."""

from __future__ import annotations

import os
from datetime import UTC

import pytest

from drkit.catalog import Catalog
from drkit.errors import CatalogError, SourceError

from .conftest import FakeClock


def test_started_run_is_running_on_this_host_and_pid(catalog: Catalog, clock: FakeClock) -> None:
    run_id = catalog.start_run("api", "backup")
    run = catalog.list_runs("api")[0]
    assert (run.id, run.outcome, run.pid) == (run_id, "running", os.getpid())
    assert run.started_at == clock.now
    assert run.started_at.tzinfo is UTC
    assert run.finished_at is None


def test_finished_run_keeps_outcome_summary_and_one_line_error(
    catalog: Catalog, clock: FakeClock
) -> None:
    run_id = catalog.start_run("api", "backup")
    clock.advance(90)
    summary = {"phases": {"capture": 1.5}, "bytes": 2048, "stores": {"s3-east": "ok"}}
    catalog.finish_run(
        run_id,
        "degraded",
        error="store s3-west failed\nTraceback (most recent call last): ...",
        summary=summary,
    )
    run = catalog.last_run("api", "backup")
    assert run is not None
    assert run.outcome == "degraded"
    assert run.error == "store s3-west failed"
    assert run.summary == summary
    assert run.finished_at == clock.now


def test_run_error_never_stores_a_url_password(catalog: Catalog) -> None:
    run_id = catalog.start_run("api", "backup")
    catalog.finish_run(run_id, "failed", error="pg_dump postgresql://app:s3cret@db/app failed")
    run = catalog.last_run("api", "backup")
    assert run is not None and run.error is not None
    assert "s3cret" not in run.error


def test_list_runs_filters_by_plan_kind_and_since(catalog: Catalog, clock: FakeClock) -> None:
    old_backup = catalog.start_run("api", "backup")
    clock.advance(3600)
    cutoff = clock.now
    new_backup = catalog.start_run("api", "backup")
    drill = catalog.start_run("api", "drill")
    catalog.start_run("billing", "backup")
    assert [run.id for run in catalog.list_runs("api", "backup")] == [new_backup, old_backup]
    assert [run.id for run in catalog.list_runs("api", since=cutoff)] == [drill, new_backup]
    assert len(catalog.list_runs()) == 4
    last = catalog.last_run("api", "drill")
    assert last is not None and last.id == drill
    assert catalog.last_run("api", "prune") is None


def test_unknown_kind_or_outcome_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="run kind"):
        catalog.start_run("api", "snapshot")
    run_id = catalog.start_run("api", "backup")
    with pytest.raises(ValueError, match="run outcome"):
        catalog.finish_run(run_id, "success")


def test_finishing_an_unknown_run_raises_catalog_error(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="run 999 is not in the catalog"):
        catalog.finish_run(999, "ok")


def test_track_run_records_failure_when_the_block_raises(catalog: Catalog) -> None:
    with pytest.raises(SourceError), catalog.track_run("api", "backup") as tracker:
        tracker.summary = {"bytes": 10}
        raise SourceError("pg_dump exited 1: connection refused")
    run = catalog.last_run("api", "backup")
    assert run is not None
    assert (run.id, run.outcome) == (tracker.id, "failed")
    assert run.error == "pg_dump exited 1: connection refused"
    assert run.summary == {"bytes": 10}


def test_track_run_records_the_outcome_the_block_chose(catalog: Catalog) -> None:
    with catalog.track_run("api", "verify") as tracker:
        tracker.outcome = "degraded"
    run = catalog.last_run("api", "verify")
    assert run is not None and run.outcome == "degraded"
