"""Drill records: measured RTO/RPO, phases and checks, kept as evidence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta

from drkit.catalog import Catalog, DrillCheck, DrillInput
from drkit.outcome import Outcome

from .conftest import START


def make_drill(outcome: str, hours: int = 0) -> DrillInput:
    started = START + timedelta(hours=hours)
    return DrillInput(
        plan="api",
        snapshot_id="20261127T153000.000Z-3fa2c1",
        store="s3-east",
        started_at=started,
        finished_at=started + timedelta(seconds=75),
        outcome=outcome,
        sandbox_kinds=("postgresql-cluster", "directory"),
        rto_seconds=75.0,
        rpo_seconds=3600.0 + hours,
        phases={"provision": 3.0, "fetch": 20.5, "decrypt": 4.0, "load": 40.0, "checks": 7.5},
        checks=(
            DrillCheck("fingerprint:db", True, 3, "3 of 3 tables match"),
            DrillCheck("sql:users-present", outcome == Outcome.OK, 0, "expected > 0 rows"),
        ),
        error=None if outcome == Outcome.OK else "check sql:users-present failed\ndetails",
    )


def test_recorded_drill_round_trips_phases_and_checks(catalog: Catalog) -> None:
    run_id = catalog.start_run("api", "drill")
    drill = make_drill(Outcome.OK)
    drill_id = catalog.record_drill(replace(drill, run_id=run_id))
    [recorded] = catalog.list_drills("api")
    assert recorded.id == drill_id and recorded.run_id == run_id
    assert recorded.phases == drill.phases
    assert recorded.checks == drill.checks
    assert recorded.sandbox_kinds == ("postgresql-cluster", "directory")
    assert (recorded.rto_seconds, recorded.rpo_seconds) == (75.0, 3600.0)
    assert recorded.started_at == START and recorded.started_at.tzinfo is UTC


def test_drills_list_newest_first_and_last_drill_can_require_a_pass(catalog: Catalog) -> None:
    passed = catalog.record_drill(make_drill(Outcome.OK, hours=0))
    failed = catalog.record_drill(make_drill(Outcome.FAILED, hours=1))
    assert [drill.id for drill in catalog.list_drills("api")] == [failed, passed]
    newest = catalog.last_drill("api")
    assert newest is not None and newest.id == failed
    assert newest.error == "check sql:users-present failed"
    newest_pass = catalog.last_drill("api", outcome=Outcome.OK)
    assert newest_pass is not None and newest_pass.id == passed
    since = START + timedelta(minutes=30)
    assert [drill.id for drill in catalog.list_drills("api", since=since)] == [failed]
    assert catalog.last_drill("billing") is None
